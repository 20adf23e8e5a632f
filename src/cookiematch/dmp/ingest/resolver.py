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
