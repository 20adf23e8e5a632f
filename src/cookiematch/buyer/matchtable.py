"""The buyer's match table: gid <-> buyer uid, with the cookie version and the time of the match.

Both directions are stored, as two plain keys written in one ``write_many`` (one transaction
where the backend has them). The whole key and value layout lives in :class:`MatchKeys` and
:class:`MatchCodec`; nothing else builds a key or packs a value.

    key                          value (big-endian)                      size
    bm:{nid}:g:{gid}             B version=1 | 16s uid | I cver | I t    25 bytes
    bm:{nid}:u:{uid 22 chars}    B version=1 | I cver | I t | gid ascii  9 + len(gid)

``t`` is the Unix time of the match in whole seconds (fits u32 until 2106). Entries carry a
TTL (by default twice the staleness period), so an abandoned browser costs nothing forever.
A re-match overwrites both keys without reading first; a reverse entry left behind by a
browser whose gid or uid changed is never consulted for the other browser and expires.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cookiematch.buyer.ids import format_uid
from cookiematch.errors import StorageError
from cookiematch.storage.base import Clock, Store, Write

FORMAT_VERSION = 1
_BY_GID = struct.Struct(">B16sII")
_BY_UID = struct.Struct(">BII")


@dataclass(frozen=True, slots=True)
class MatchEntry:
    """One match: which buyer uid goes with which gid, in which cookie version, since when."""

    gid: str
    uid: bytes
    cver: int
    updated_at: int  # Unix seconds

    def age(self, now: float) -> float:
        return now - self.updated_at


@dataclass(frozen=True, slots=True)
class MatchKeys:
    """The store keys of one buyer's match table."""

    nid: str

    def by_gid(self, gid: str) -> str:
        return f"bm:{self.nid}:g:{gid}"

    def by_uid(self, uid: bytes) -> str:
        return f"bm:{self.nid}:u:{format_uid(uid)}"


class MatchCodec:
    """Packs and unpacks entries; an unreadable value is a StorageError."""

    @staticmethod
    def pack_by_gid(entry: MatchEntry) -> bytes:
        return _BY_GID.pack(FORMAT_VERSION, entry.uid, entry.cver, entry.updated_at)

    @staticmethod
    def pack_by_uid(entry: MatchEntry) -> bytes:
        return _BY_UID.pack(FORMAT_VERSION, entry.cver, entry.updated_at) + entry.gid.encode()

    @staticmethod
    def unpack_by_gid(gid: str, value: bytes) -> MatchEntry:
        try:
            version, uid, cver, updated_at = _BY_GID.unpack(value)
        except struct.error as exc:
            raise StorageError(f"match entry for gid {gid!r} is corrupt: {exc}") from exc
        _check_version(version)
        return MatchEntry(gid, uid, cver, updated_at)

    @staticmethod
    def unpack_by_uid(uid: bytes, value: bytes) -> MatchEntry:
        try:
            version, cver, updated_at = _BY_UID.unpack_from(value)
            gid = value[_BY_UID.size :].decode("ascii")
        except (struct.error, UnicodeDecodeError) as exc:
            raise StorageError(f"match entry for uid {format_uid(uid)} is corrupt") from exc
        _check_version(version)
        return MatchEntry(gid, uid, cver, updated_at)


def _check_version(version: int) -> None:
    if version != FORMAT_VERSION:
        raise StorageError(f"match entry has unknown format version {version}")


@dataclass(frozen=True, slots=True)
class Lookup:
    """What one bid-time read found: the entry by gid and/or the entry by uid."""

    by_gid: MatchEntry | None = None
    by_uid: MatchEntry | None = None

    @property
    def newest(self) -> MatchEntry | None:
        found = [e for e in (self.by_gid, self.by_uid) if e is not None]
        return max(found, key=lambda e: e.updated_at) if found else None


class MatchTable:
    """One buyer's match table over a Store. Every read is a single store call."""

    def __init__(self, store: Store, nid: str, *, ttl_seconds: float, clock: Clock) -> None:
        self._store = store
        self.keys = MatchKeys(nid)
        self._ttl = ttl_seconds
        self._clock = clock

    async def record(self, gid: str, uid: bytes, cver: int) -> MatchEntry:
        """Upsert both directions at the clock's time, in one store call."""
        entry = MatchEntry(gid, uid, cver, int(self._clock()))
        await self._store.write_many(
            [
                Write(self.keys.by_gid(gid), MatchCodec.pack_by_gid(entry), self._ttl),
                Write(self.keys.by_uid(uid), MatchCodec.pack_by_uid(entry), self._ttl),
            ]
        )
        return entry

    async def by_gid(self, gid: str) -> MatchEntry | None:
        value = await self._store.get(self.keys.by_gid(gid))
        return None if value is None else MatchCodec.unpack_by_gid(gid, value)

    async def by_uid(self, uid: bytes) -> MatchEntry | None:
        value = await self._store.get(self.keys.by_uid(uid))
        return None if value is None else MatchCodec.unpack_by_uid(uid, value)

    async def lookup(self, gid: str | None, uid: bytes | None) -> Lookup:
        """Both entries that exist among ``gid`` and ``uid``, in one ``get_many``."""
        keys = []
        if gid is not None:
            keys.append(self.keys.by_gid(gid))
        if uid is not None:
            keys.append(self.keys.by_uid(uid))
        if not keys:
            return Lookup()
        values = iter(await self._store.get_many(keys))
        by_gid = by_uid = None
        if gid is not None and (value := next(values)) is not None:
            by_gid = MatchCodec.unpack_by_gid(gid, value)
        if uid is not None and (value := next(values)) is not None:
            by_uid = MatchCodec.unpack_by_uid(uid, value)
        return Lookup(by_gid, by_uid)
