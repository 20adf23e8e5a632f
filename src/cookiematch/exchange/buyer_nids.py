"""Which buyers may have keys of their own under a browser, kept in the store so that an
erasure finds every such key without a keyspace scan, and the match tag pays nothing.

Two field maps, buyer nid -> the last time (unix seconds) a worker saw it:

    exchange:hosted_nids   buyers with ``hosted_match = true``: ``hm:{tag}:<nid>`` keys
    exchange:gid_nids      every buyer: ``gt:{tag}:<nid>``, the last time a gid reached it
                           (``keys.gid_time_key``)

The registry notes its buyers before it serves them (``ExchangeRegistry``'s ``on_buyers``
hook: a configured buyer at start, a stored one at a refresh, an admin ``PUT`` before it is
stored), so a buyer's nid is here before any key of its can be written. Each worker writes a
nid again once a day (``RENEW_SECONDS``); a field lives as long as the keys it stands for
(``hosted_match_ttl_days``, ``match_expiry_days``) plus two renewal periods, so a buyer that
stopped hosting, or was removed, stays listed as long as any of its keys can.
"""

from __future__ import annotations

from collections.abc import Iterable

from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.exchange.model import Buyer, ExchangeSettings
from cookiematch.storage.base import FieldWrite, Store

__all__ = ["GID_NIDS_KEY", "HOSTED_NIDS_KEY", "RENEW_SECONDS", "BuyerNids"]

HOSTED_NIDS_KEY = "exchange:hosted_nids"
GID_NIDS_KEY = "exchange:gid_nids"
RENEW_SECONDS = SECONDS_PER_DAY


class BuyerNids:
    """The nids whose hosted match data, and whose gid times, may still be stored."""

    def __init__(self, store: Store, settings: ExchangeSettings, *, clock: Clock) -> None:
        self._store = store
        self._hosted_ttl = settings.hosted_match_ttl_days * SECONDS_PER_DAY + 2 * RENEW_SECONDS
        self._gid_ttl = settings.match_expiry_days * SECONDS_PER_DAY + 2 * RENEW_SECONDS
        self._clock = clock
        self._noted: dict[tuple[str, bool], float] = {}  # (nid, hosted) -> last written here

    async def note(self, buyers: Iterable[Buyer]) -> None:
        """Record ``buyers``, and the hosted ones among them (each at most once a day per
        worker), in one store call."""
        now = self._clock()

        def due(nid: str, hosted: bool) -> bool:
            return now - self._noted.get((nid, hosted), -RENEW_SECONDS) >= RENEW_SECONDS

        listed = list(buyers)
        every = [b.nid for b in listed if due(b.nid, False)]
        hosted = [b.nid for b in listed if b.hosted_match and due(b.nid, True)]
        stamp = str(int(now)).encode()
        writes: list[FieldWrite] = []
        if every:
            writes.append((GID_NIDS_KEY, dict.fromkeys(every, stamp), self._gid_ttl))
        if hosted:
            writes.append((HOSTED_NIDS_KEY, dict.fromkeys(hosted, stamp), self._hosted_ttl))
        if not writes:
            return
        await self._store.hset_many(writes)
        self._noted.update(dict.fromkeys(((nid, False) for nid in every), now))
        self._noted.update(dict.fromkeys(((nid, True) for nid in hosted), now))

    async def nids(self) -> tuple[set[str], set[str]]:
        """Every nid recorded and not yet expired: the hosted ones, and those with gid times."""
        hosted, gids = await self._store.hgetall_many([HOSTED_NIDS_KEY, GID_NIDS_KEY])
        return set(hosted), set(gids)
