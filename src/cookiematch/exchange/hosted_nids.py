"""Which buyers may hold hosted match data, kept in the store so that an erasure finds every
``hm:{tag}:{nid}`` key of a browser without a keyspace scan, and the match tag pays nothing.

One field map, ``exchange:hosted_nids``: buyer nid -> the last time (unix seconds) a worker
saw it with ``hosted_match = true``. The registry notes its buyers before it serves them
(``ExchangeRegistry``'s ``on_buyers`` hook: a configured buyer at start, a stored one at a
refresh, an admin ``PUT`` before it is stored), so a buyer's nid is here before any hosted
write for it can happen. Each worker writes a nid again once a day (``RENEW_SECONDS``); the
field lives as long as the data it stands for (``hosted_match_ttl_days``) plus two renewal
periods, so a buyer that stopped hosting, or was removed, stays listed as long as any of its
data can.
"""

from __future__ import annotations

from collections.abc import Iterable

from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.exchange.model import Buyer, ExchangeSettings
from cookiematch.storage.base import Store

__all__ = ["HOSTED_NIDS_KEY", "RENEW_SECONDS", "HostedNids"]

HOSTED_NIDS_KEY = "exchange:hosted_nids"
RENEW_SECONDS = SECONDS_PER_DAY


class HostedNids:
    """The nids whose hosted match data may still be stored."""

    def __init__(self, store: Store, settings: ExchangeSettings, *, clock: Clock) -> None:
        self._store = store
        self._ttl = settings.hosted_match_ttl_days * SECONDS_PER_DAY + 2 * RENEW_SECONDS
        self._clock = clock
        self._noted: dict[str, float] = {}  # nid -> when this worker last wrote it

    async def note(self, buyers: Iterable[Buyer]) -> None:
        """Record the hosted buyers among ``buyers`` (each at most once a day per worker)."""
        now = self._clock()
        due = [
            b.nid
            for b in buyers
            if b.hosted_match and now - self._noted.get(b.nid, -RENEW_SECONDS) >= RENEW_SECONDS
        ]
        if not due:
            return
        stamp = str(int(now)).encode()
        await self._store.hset(HOSTED_NIDS_KEY, dict.fromkeys(due, stamp), ttl=self._ttl)
        self._noted.update(dict.fromkeys(due, now))

    async def nids(self) -> set[str]:
        """Every nid recorded and not yet expired."""
        return set(await self._store.hgetall(HOSTED_NIDS_KEY))
