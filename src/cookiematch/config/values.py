"""Small immutable values of the configuration: secrets (``Secret`` itself is
``cookiematch/secret.py``'s) and listen addresses; the checks that several tables share
(duplicates, URLs).

Each has a ``from_config`` class method that the loader calls on the raw TOML value; it
raises ``ValueError``/``TypeError`` with a message, and the loader adds the file and key.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Any

from cookiematch.errors import InvalidURL
from cookiematch.protocol.url import parse_absolute_url, parse_origin
from cookiematch.secret import Secret as Secret  # re-exported: the configuration's secrets

_URLSAFE = str.maketrans("-_", "+/")


class KeySecret(Secret):
    """A 32-byte user-ID key written as standard or URL-safe base64 (padding optional)."""

    __slots__ = ("_key",)
    _key: bytes

    KEY_BYTES = 32

    def __init__(self, value: str) -> None:
        super().__init__(value)
        text = value.strip()
        padded = text + "=" * (-len(text) % 4)
        try:
            key = base64.b64decode(padded.translate(_URLSAFE).encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise ValueError("must be base64 (standard or URL-safe)") from None
        if len(key) != self.KEY_BYTES:
            raise ValueError(f"must decode to exactly {self.KEY_BYTES} bytes, not {len(key)}")
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_config(cls, value: object) -> KeySecret:
        if not isinstance(value, str):
            raise TypeError(f"Expected `str`, got `{type(value).__name__}`")
        return cls(value)

    def key_bytes(self) -> bytes:
        """The decoded 32 bytes."""
        return self._key


_HOST_PORT = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})"
)


class Listen:
    """A ``host:port`` to listen on (``[::1]:8700`` for IPv6); port 0 picks a free one."""

    __slots__ = ("host", "port")

    host: str
    port: int

    def __init__(self, host: str, port: int) -> None:
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)

    @classmethod
    def parse(cls, text: str) -> Listen:
        match = _HOST_PORT.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"expected host:port (or [ipv6]:port), got {text!r}")
        port = int(match["port"])
        if port > 65535:
            raise ValueError(f"port {port} is out of range 0-65535")
        if match["v6"] is not None:
            try:
                ipaddress.IPv6Address(match["v6"])
            except ValueError:
                raise ValueError(f"invalid IPv6 address {match['v6']!r}") from None
            return cls(match["v6"], port)
        return cls(match["host"], port)

    @classmethod
    def from_config(cls, value: object) -> Listen:
        if not isinstance(value, str):
            raise TypeError(f"Expected `str`, got `{type(value).__name__}`")
        return cls.parse(value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Listen is immutable")

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"Listen({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Listen):
            return NotImplemented
        return (self.host, self.port) == (other.host, other.port)

    def __hash__(self) -> int:
        return hash((self.host, self.port))


def proxy_network(entry: str) -> str:
    """Validate one ``trusted_proxies`` entry (an IP or a CIDR) and return it normalized."""
    try:
        network = ipaddress.ip_network(entry.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"not an IP address or CIDR network: {exc}") from None
    if network.num_addresses == 1:
        return str(network.network_address)
    return str(network)


Problems = list[tuple[str, str]]
"""What a table's ``problems()`` finds: (key relative to the table, message)."""


def duplicates(table: str, field: str, values: list[object]) -> Problems:
    """One problem per entry of ``table`` whose ``field`` repeats an earlier entry's."""
    seen: set[object] = set()
    found: Problems = []
    for i, value in enumerate(values):
        if value in seen:
            found.append((f"{table}[{i}].{field}", f"duplicate {field} {value!r}"))
        seen.add(value)
    return found


def url_problems(key: str, url: str | None, *, query: bool = True) -> Problems:
    """``[(key, reason)]`` when ``url`` is not an absolute http(s) URL (``protocol/url.py``),
    or has a query where none belongs; nothing for an absent URL."""
    if url is None:
        return []
    try:
        parsed = parse_absolute_url(url)
    except InvalidURL as exc:
        return [(key, str(exc))]
    if not query and parsed.query is not None:
        return [(key, "URL must not contain a query")]
    return []


def origin_problems(key: str, origin: str) -> Problems:
    """``[(key, reason)]`` when ``origin`` is not ``scheme://host[:port]``."""
    try:
        parse_origin(origin)
    except InvalidURL as exc:
        return [(key, str(exc))]
    return []
