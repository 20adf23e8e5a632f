"""Which peers may tell us the original scheme and client (X-Forwarded-Proto / -For), and
what they told us."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """A set of proxy addresses and networks (``"127.0.0.1"``, ``"10.0.0.0/8"``, ``"::1"``)."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(entry.strip(), strict=False) for entry in entries
        )
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, peer: str) -> bool:
        cached = self._cache.get(peer)
        if cached is None:
            try:
                address = ipaddress.ip_address(peer)
            except ValueError:
                cached = False
            else:
                cached = any(address in network for network in self._networks)
            if len(self._cache) < 4096:
                self._cache[peer] = cached
        return cached


def forwarded_scheme(header: str | None) -> str | None:
    """The first hop's scheme from X-Forwarded-Proto, if it is http or https."""
    if not header:
        return None
    first = header.split(",", 1)[0].strip().lower()
    return first if first in ("http", "https") else None


def forwarded_client(peer: str, header: str | None, trusted: TrustedProxies) -> str:
    """The browser's address: ``peer`` unless it is a trusted proxy; then X-Forwarded-For read
    from the right, past every trusted proxy, to the first address none of ours added.

    The left-most address is whatever the browser sent and cannot be believed; a malformed
    entry stops the walk at the last address known to be good.
    """
    if not header or not trusted.trusts(peer):
        return peer
    client = peer
    for entry in reversed(header.split(",")):
        try:
            address = str(ipaddress.ip_address(entry.strip()))
        except ValueError:
            return client
        client = address
        if not trusted.trusts(address):
            return address
    return client
