"""What each (segment, destination) has been sent: DMP uid -> the destination ID it got; the
destination IDs of erased browsers still to be removed there; and the delivery report of its
last export.

Kept in ``SHARDS`` maps by a hash of the uid (``keys.sent_key``), so that no map grows with a
large segment; the stored destination ID is what a later remove must name, even if the
partner's ID changed since. The analytics engine keeps its own record of what it sent
(``dmp/analytics/export_sql.py``); this one is what access and erasure read, and what the
first export of a pair on the engine starts from.
Every entry lives ``ttl_seconds`` (``[dmp] export_state_ttl_days``) from its last write.

An erased browser's entry is moved, at the erasure, to the removal list (``dmpx:{<segment>:
<dest>}:gone``: destination ID -> erased at), which names the destination ID only: the next
export sends those removes first and forgets them once the destination answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from cookiematch.dmp import keys, lifetimes
from cookiematch.dmp.exports.report import DeliveryReport
from cookiematch.storage.base import FieldEntry, Store


class ExportState:
    def __init__(
        self,
        store: Store,
        segment: str,
        destination: str,
        ttl_seconds: float = lifetimes.EXPORT_STATE_TTL,
    ) -> None:
        self._store = store
        self.segment = segment
        self.destination = destination
        self.ttl = ttl_seconds

    def _key(self, shard: int) -> str:
        return keys.sent_key(self.segment, self.destination, shard)

    async def shard(self, shard: int) -> dict[str, str]:
        raw = await self._store.hgetall(self._key(shard))
        return {uid: value.decode() for uid, value in raw.items()}

    async def shard_entries(self, shard: int) -> dict[str, FieldEntry]:
        """The shard as stored: uid -> (destination ID, remaining lifetime)."""
        return await self._store.hgetall_entries(self._key(shard))

    async def record(self, sent: Mapping[str, str], dropped: Sequence[str]) -> None:
        """Remember ``sent`` (uid -> destination ID) and forget ``dropped`` uids."""
        sets: dict[str, dict[str, bytes]] = {}
        dels: dict[str, list[str]] = {}
        for uid in dropped:
            if uid not in sent:
                dels.setdefault(self._key(keys.shard_of(uid)), []).append(uid)
        for uid, did in sent.items():
            sets.setdefault(self._key(keys.shard_of(uid)), {})[uid] = did.encode()
        writes = [(key, fields, self.ttl) for key, fields in sets.items()]
        await asyncio.gather(
            *(self._store.hdel(k, f) for k, f in dels.items()),
            *([self._store.hset_many(writes)] if writes else []),  # one store call
        )

    async def size(self) -> int:
        shards = await asyncio.gather(*(self.shard(s) for s in range(keys.SHARDS)))
        return sum(len(s) for s in shards)

    async def erase(self, dmp_uid: str, now: float) -> str | None:
        """Move the browser's entry to the removal list; the destination ID it names, if any."""
        key = self._key(keys.shard_of(dmp_uid))
        raw = await self._store.hget(key, dmp_uid)
        if raw is not None:
            gone = keys.removals_key(self.segment, self.destination)
            await self._store.hset(gone, {raw.decode(): str(int(now)).encode()}, ttl=self.ttl)
            await self._store.hdel(key, [dmp_uid])
        return None if raw is None else raw.decode()

    async def removals(self) -> list[str]:
        """The destination IDs of erased browsers still to be removed there."""
        return sorted(await self._store.hgetall(keys.removals_key(self.segment, self.destination)))

    async def removed(self, destination_ids: Iterable[str]) -> None:
        """Forget removals the destination answered."""
        ids = list(destination_ids)
        if ids:
            await self._store.hdel(keys.removals_key(self.segment, self.destination), ids)

    async def save_report(self, report: DeliveryReport) -> None:
        await self._store.set(
            keys.last_export_key(self.segment, self.destination),
            msgspec.json.encode(report),
            ttl=self.ttl,
        )

    async def last_report(self) -> DeliveryReport | None:
        """The report of the last export, or None if there was none."""
        raw = await self._store.get(keys.last_export_key(self.segment, self.destination))
        return None if raw is None else msgspec.json.decode(raw, type=DeliveryReport)
