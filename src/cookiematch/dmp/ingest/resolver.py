"""Partner uid -> DMP uid, through the match table's reverse entries, many at a time."""

from __future__ import annotations

from collections.abc import Collection

import msgspec

from cookiematch.dmp import keys
from cookiematch.dmp.matches import ReverseMatch
from cookiematch.storage.base import Store

CHUNK = 5000  # keys per get_many

_reverse = msgspec.json.Decoder(ReverseMatch)


class Resolver:
    """Looks partner uids up with ``get_many`` in chunks (one query or pipeline per chunk)."""

    def __init__(self, store: Store, chunk: int = CHUNK) -> None:
        self._store = store
        self._chunk = chunk

    async def resolve(self, partner_id: str, partner_uids: Collection[str]) -> dict[str, str]:
        """The DMP uid of each partner uid that is synced (absent ones are left out)."""
        uids = list(partner_uids)
        found: dict[str, str] = {}
        for i in range(0, len(uids), self._chunk):
            chunk = uids[i : i + self._chunk]
            values = await self._store.get_many([keys.reverse_key(partner_id, u) for u in chunk])
            for uid, raw in zip(chunk, values, strict=True):
                if raw is not None:
                    try:
                        found[uid] = _reverse.decode(raw).dmp_uid
                    except msgspec.DecodeError:
                        continue
        return found


class RememberingResolver:
    """One ingestion's look-ups of one partner's uids, remembered for the run.

    A file holds several records per partner uid, spread over many batches; a synced uid is
    looked up once and its DMP uid reused (a re-sync during the run is seen by the next run).
    Uids not synced yet are asked again each time (their sync may arrive meanwhile). At most
    ``limit`` are remembered; then they are forgotten all at once and the memory starts over.
    """

    def __init__(self, resolver: Resolver, partner_id: str, limit: int) -> None:
        self._resolver = resolver
        self._partner_id = partner_id
        self._limit = limit
        self._known: dict[str, str] = {}

    async def resolve(self, partner_uids: Collection[str]) -> dict[str, str]:
        """As ``Resolver.resolve``."""
        known = self._known
        found: dict[str, str] = {}
        asked: list[str] = []
        for uid in partner_uids:
            dmp_uid = known.get(uid)
            if dmp_uid is None:
                asked.append(uid)
            else:
                found[uid] = dmp_uid
        if asked:
            fresh = await self._resolver.resolve(self._partner_id, asked)
            if len(known) + len(fresh) > self._limit:
                known.clear()
            known.update(fresh)
            found.update(fresh)
        return found
