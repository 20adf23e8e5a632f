"""What each (segment, destination) has been sent: DMP uid -> the destination ID it got; and
the delivery report of its last export.

Kept sharded like the member index, so an export walks both shard by shard; the stored
destination ID is what a later remove must name, even if the partner's ID changed since.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import msgspec

from cookiematch.dmp import keys
from cookiematch.dmp.exports.report import DeliveryReport
from cookiematch.storage.base import Store


class ExportState:
    def __init__(self, store: Store, segment: str, destination: str) -> None:
        self._store = store
        self.segment = segment
        self.destination = destination

    def _key(self, shard: int) -> str:
        return keys.sent_key(self.segment, self.destination, shard)

    async def shard(self, shard: int) -> dict[str, str]:
        raw = await self._store.hgetall(self._key(shard))
        return {uid: value.decode() for uid, value in raw.items()}

    async def record(self, sent: Mapping[str, str], dropped: Sequence[str]) -> None:
        """Remember ``sent`` (uid -> destination ID) and forget ``dropped`` uids."""
        sets: dict[str, dict[str, bytes]] = {}
        dels: dict[str, list[str]] = {}
        for uid in dropped:
            if uid not in sent:
                dels.setdefault(self._key(keys.shard_of(uid)), []).append(uid)
        for uid, did in sent.items():
            sets.setdefault(self._key(keys.shard_of(uid)), {})[uid] = did.encode()
        await asyncio.gather(
            *(self._store.hdel(k, f) for k, f in dels.items()),
            *(self._store.hset(k, m) for k, m in sets.items()),
        )

    async def size(self) -> int:
        shards = await asyncio.gather(*(self.shard(s) for s in range(keys.SHARDS)))
        return sum(len(s) for s in shards)

    async def save_report(self, report: DeliveryReport) -> None:
        await self._store.set(
            keys.last_export_key(self.segment, self.destination), msgspec.json.encode(report)
        )

    async def last_report(self) -> DeliveryReport | None:
        """The report of the last export, or None if there was none."""
        raw = await self._store.get(keys.last_export_key(self.segment, self.destination))
        return None if raw is None else msgspec.json.decode(raw, type=DeliveryReport)
