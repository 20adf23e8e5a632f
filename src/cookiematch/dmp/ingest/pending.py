"""Records whose partner uid is not synced yet: kept, and applied when the sync arrives.

Each waits in ``dmp:pend:{<partner>:<uid>}`` (tagged like the reverse entry) under a digest of
its content, so the same record sent twice waits once; it expires after ``ttl_seconds``. The
DMP's callback reads that map in the store call that stores a match (``waiting_key``) and
applies what it found (``resolve_found``; ``resolve`` reads it first); ``recheck`` covers a
sync stored while a batch was being written. What ``resolve`` applies is counted in the funnel
(``resolved``, and the attribute values).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence

import msgspec

from cookiematch.clock import Clock
from cookiematch.dmp import keys
from cookiematch.dmp.funnel import Funnel
from cookiematch.dmp.ingest.records import JsonValue, Record, attribute_values
from cookiematch.dmp.ingest.resolver import Resolver
from cookiematch.dmp.traits.writes import ProfileUpdate, TraitStore
from cookiematch.storage.base import Store


class StoredRecord(msgspec.Struct, array_like=True, frozen=True):
    at: float
    attributes: dict[str, JsonValue]
    remove: tuple[str, ...]
    events: tuple[tuple[str, int], ...]


_decoder = msgspec.msgpack.Decoder(StoredRecord)


def _content(record: Record) -> bytes:
    return msgspec.msgpack.encode((record.attributes, record.remove, record.events))


class PendingRecords:
    def __init__(
        self,
        store: Store,
        traits: TraitStore,
        resolver: Resolver,
        *,
        ttl_seconds: float,
        clock: Clock = time.time,
        funnel: Funnel | None = None,
    ) -> None:
        self.funnel = Funnel() if funnel is None else funnel
        self._store = store
        self._traits = traits
        self._resolver = resolver
        self._ttl = ttl_seconds
        self._clock = clock

    async def add(self, partner_id: str, records: Sequence[Record]) -> None:
        now = self._clock()
        by_uid: dict[str, dict[str, bytes]] = {}
        for record in records:
            digest = hashlib.blake2b(_content(record), digest_size=12).hexdigest()
            stored = StoredRecord(now, dict(record.attributes), record.remove, record.events)
            by_uid.setdefault(record.uid, {})[digest] = msgspec.msgpack.encode(stored)
        await self._store.hset_many(
            [
                (keys.pending_key(partner_id, uid), fields, self._ttl)
                for uid, fields in by_uid.items()
            ]
        )

    async def resolve(self, partner_id: str, partner_uid: str, dmp_uid: str) -> int:
        """Apply what waits for this partner uid to the profile; return how many records."""
        found = await self._store.hgetall(self.waiting_key(partner_id, partner_uid))
        return await self.resolve_found(partner_id, partner_uid, dmp_uid, found)

    def waiting_key(self, partner_id: str, partner_uid: str) -> str:
        """The map of what waits for this partner uid (the DMP's callback reads it in its
        match's own store call, ``MatchTable.record``)."""
        return keys.pending_key(partner_id, partner_uid)

    async def resolve_found(
        self, partner_id: str, partner_uid: str, dmp_uid: str, found: Mapping[str, bytes]
    ) -> int:
        """Apply ``found``, the waiting map of this partner uid read after its match was
        stored, to the profile; return how many records."""
        if not found:
            return 0
        stored: list[StoredRecord] = []
        for value in found.values():
            try:
                stored.append(_decoder.decode(value))
            except msgspec.DecodeError:
                continue
        update = ProfileUpdate(partner_id)
        for record in sorted(stored, key=lambda r: r.at):
            update.merge(record.attributes, record.remove, record.events)
        await self._traits.apply({dmp_uid: update})
        # only the records read: one parked meanwhile waits for the next resolution; of two
        # resolutions that read the same records (two callbacks in one group commit), the
        # traits are applied by both (alike) and the records counted by the one that removed them
        removed = await self._store.hdel(self.waiting_key(partner_id, partner_uid), list(found))
        if not removed:
            return 0
        resolved = min(removed, len(stored))
        values = sum(attribute_values(r.attributes) for r in stored)
        self.funnel.ingested(partner_id, {"resolved": resolved, "values": values})
        return resolved

    async def recheck(self, partner_id: str, partner_uids: Sequence[str]) -> int:
        """Resolve the uids that got synced meanwhile; return how many records were applied."""
        synced = await self._resolver.resolve(partner_id, partner_uids)
        applied = 0
        for uid, dmp_uid in synced.items():
            applied += await self.resolve(partner_id, uid, dmp_uid)
        return applied

    async def count(self, partner_id: str, partner_uid: str) -> int:
        return len(await self._store.hgetall(keys.pending_key(partner_id, partner_uid)))
