"""The buyer's match table: gid <-> buyer uid, with the cookie version and the time of the match.

Both directions are stored and written together. The key and value layout lives in
:class:`MatchKeys` / :class:`MatchBuckets` and :class:`MatchCodec`; nothing else builds a key or
packs a value. Two layouts (``[buyer] match_table_layout``, docs/buyer.md "Match table"):

``keys``: one plain key per entry and direction, written in one ``write_many``, read in one
``get_many``; entries carry a store TTL (by default twice the staleness period)::

    key                          value (big-endian)                          size
    bm:{nid}:g:{gid}             B 1 | 16s uid | I cver | I t                25 bytes
    bm:{nid}:u:{uid 22 chars}    B 1 | I cver | I t | gid ascii               9 + len(gid)
                              or B 2 | I cver | I t | gid bytes (canonical)  9 + len(gid)*3/4

``buckets``: ~64 entries per small hash (``storage.bucketed.Buckets``), keys ``bm:{nid}:g:{hex}``
and ``bm:{nid}:u:{hex}``, fields Base85 of the id: the gid's bytes when it is canonical
unpadded base64url, else ``.`` + the gid as received (``.`` is not a Base85 character, so the
two spellings never collide); the uid's 16 bytes. Same values, written without a store TTL:
an entry older than the TTL reads as absent (``t`` is in the value). The bucket count is fixed
when the table is created and recorded in ``bm:{nid}:meta`` (:meth:`MatchTable.open`).

``t`` is the Unix time of the match in whole seconds (fits u32 until 2106).

**One pairing per id.** A match writes the new pairing and learns in the same store call what
the gid's and the uid's entries held (``swap_many`` / ``hswap_many``), then removes the
pairings it replaces: the old gid of this uid (its forward entry, if it still names this uid)
and the old uid of this gid (its reverse entry, if it still names this gid). So an id is named
by at most one entry of the other direction, and everything about a uid or a gid is found from
its own two keys, without a scan (:meth:`MatchTable.erase`, :meth:`MatchTable.held`).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar

import msgspec

from cookiematch.buyer.ids import format_uid
from cookiematch.clock import Clock
from cookiematch.errors import ConfigError, StorageError
from cookiematch.protocol.userid import b64url_nopad, b64url_nopad_decode
from cookiematch.storage.base import FieldEntry, Store, Write
from cookiematch.storage.bucketed import Buckets
from cookiematch.storage.coalesce import SwapCoalescer

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_UID_BINARY_GID = 2  # reverse entry whose gid is stored as its decoded bytes
_BY_GID = struct.Struct(">B16sII")
_BY_UID = struct.Struct(">BII")

T = TypeVar("T")
Layout = Literal["keys", "buckets"]
LayoutChoice = Literal["auto", "keys", "buckets"]


def gid_bytes(gid: str) -> bytes | None:
    """The bytes of a canonical unpadded base64url gid (re-encodes to ``gid``), else None."""
    if len(gid) % 4 == 1:
        return None
    try:
        raw = b64url_nopad_decode(gid)  # lenient, as urlsafe_b64decode: the check is below
    except ValueError:  # not ASCII (UnicodeEncodeError), or not base64 (binascii.Error)
        return None
    return raw if b64url_nopad(raw) == gid else None


def _gid_text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class MatchEntry(msgspec.Struct, frozen=True):
    """One match: which buyer uid goes with which gid, in which cookie version, since when."""

    gid: str
    uid: bytes
    cver: int
    updated_at: int  # Unix seconds

    def age(self, now: float) -> float:
        return now - self.updated_at


@dataclass(frozen=True, slots=True)
class MatchKeys:
    """The store keys of one buyer's match table (``keys`` layout), and its meta key."""

    nid: str

    def by_gid(self, gid: str) -> str:
        return f"bm:{self.nid}:g:{gid}"

    def by_uid(self, uid: bytes) -> str:
        return f"bm:{self.nid}:u:{format_uid(uid)}"

    @property
    def meta(self) -> str:
        """Records the layout (and bucket count) chosen when the table was created."""
        return f"bm:{self.nid}:meta"


@dataclass(frozen=True, slots=True)
class MatchBuckets:
    """Where each entry lives in the ``buckets`` layout: ``(hash key, field)`` per direction."""

    nid: str
    buckets: int
    forward: Buckets = dataclasses.field(init=False, repr=False, compare=False)
    reverse: Buckets = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # built once: a look-up locates an entry with them
        object.__setattr__(self, "forward", Buckets(f"bm:{self.nid}:g", self.buckets))
        object.__setattr__(self, "reverse", Buckets(f"bm:{self.nid}:u", self.buckets))

    def by_gid(self, gid: str) -> tuple[str, str]:
        raw = gid_bytes(gid)
        if raw is not None:
            return self.forward.locate(raw)
        key, _ = self.forward.locate(gid.encode())
        return key, "." + gid  # never Base85: cannot collide with a canonical gid's field

    def by_uid(self, uid: bytes) -> tuple[str, str]:
        return self.reverse.locate(uid)


class MatchCodec:
    """Packs and unpacks entries; an unreadable value is a StorageError."""

    @staticmethod
    def pack_by_gid(entry: MatchEntry) -> bytes:
        return _BY_GID.pack(FORMAT_VERSION, entry.uid, entry.cver, entry.updated_at)

    @staticmethod
    def pack_by_uid(entry: MatchEntry) -> bytes:
        """The gid as its decoded bytes when canonical (version 2), else as text (version 1)."""
        raw = gid_bytes(entry.gid)
        if raw is not None:
            return _BY_UID.pack(_UID_BINARY_GID, entry.cver, entry.updated_at) + raw
        return _BY_UID.pack(FORMAT_VERSION, entry.cver, entry.updated_at) + entry.gid.encode()

    @staticmethod
    def unpack_by_gid(gid: str, value: bytes) -> MatchEntry:
        try:
            version, uid, cver, updated_at = _BY_GID.unpack(value)
        except struct.error as exc:
            raise StorageError(f"match entry for gid {gid!r} is corrupt: {exc}") from exc
        if version != FORMAT_VERSION:
            _check_version(version)
        return MatchEntry(gid, uid, cver, updated_at)

    @staticmethod
    def unpack_by_uid(uid: bytes, value: bytes) -> MatchEntry:
        try:
            version, cver, updated_at = _BY_UID.unpack_from(value)
            rest = value[_BY_UID.size :]
            gid = _gid_text(rest) if version == _UID_BINARY_GID else rest.decode("ascii")
        except (struct.error, UnicodeDecodeError) as exc:
            raise StorageError(f"match entry for uid {format_uid(uid)} is corrupt") from exc
        if version != _UID_BINARY_GID:
            _check_version(version)
        if not gid:
            raise StorageError(f"match entry for uid {format_uid(uid)} has no gid")
        return MatchEntry(gid, uid, cver, updated_at)


def _check_version(version: int) -> None:
    if version != FORMAT_VERSION:
        raise StorageError(f"match entry has unknown format version {version}")


class Lookup(msgspec.Struct, frozen=True):
    """What one bid-time read found: the entry by gid and/or the entry by uid."""

    by_gid: MatchEntry | None = None
    by_uid: MatchEntry | None = None

    @property
    def newest(self) -> MatchEntry | None:
        """The more recent of the two; the gid's entry on a tie."""
        by_gid, by_uid = self.by_gid, self.by_uid
        if by_uid is None:
            return by_gid
        if by_gid is None or by_uid.updated_at > by_gid.updated_at:
            return by_uid
        return by_gid


_NOTHING = Lookup()


class Erased(NamedTuple):
    """How many stored entries an erasure removed, per direction."""

    by_gid: int
    by_uid: int


class HeldEntry(NamedTuple):
    """One stored entry about a uid: its direction, where it is (a plain key, or a field of a
    bucket), its content (None if unreadable), and its store lifetime (None: no TTL)."""

    direction: Literal["by_gid", "by_uid"]
    key: str
    field: str | None
    entry: MatchEntry | None
    expires_in_seconds: float | None


async def _together(first: Awaitable[T], second: Awaitable[T]) -> tuple[T, T]:
    """Both concurrently, like ``asyncio.gather`` but ~20% cheaper per call (one task).

    ``second`` starts as a task while ``first`` runs here; both reach the store (and its next
    pipeline) before either waits for a reply. If ``first`` fails, ``second`` is cancelled.
    """
    task = asyncio.ensure_future(second)
    try:
        result = await first
    except BaseException:
        task.cancel()
        raise
    return result, await task


def _meta_value(buckets: int | None) -> bytes:
    return b"keys" if buckets is None else f"buckets {buckets}".encode()


def _parse_meta(raw: bytes, key: str) -> int | None:
    """The bucket count recorded in a meta value (None: ``keys`` layout)."""
    parts = raw.split()
    if parts == [b"keys"]:
        return None
    if len(parts) == 2 and parts[0] == b"buckets" and parts[1].isdigit() and int(parts[1]) > 0:
        return int(parts[1])
    raise StorageError(f"match table meta key {key!r} holds {raw[:40]!r}, not a layout")


class MatchTable:
    """One buyer's match table over a Store.

    ``buckets=None`` is the ``keys`` layout, else the ``buckets`` layout with that many buckets
    per direction (use :meth:`open` in a service: it records and enforces the choice). A read
    costs one store call (``keys``) or one ``hget`` per id, issued together (``buckets``).
    """

    def __init__(
        self,
        store: Store,
        nid: str,
        *,
        ttl_seconds: float,
        clock: Clock,
        buckets: int | None = None,
    ) -> None:
        self._store = store
        self._swaps = SwapCoalescer(store)  # the matches of a turn of the loop: one store call
        self.keys = MatchKeys(nid)
        self.buckets = None if buckets is None else MatchBuckets(nid, buckets)
        self._ttl = ttl_seconds
        self._clock = clock

    @property
    def store(self) -> Store:
        """The store this table reads and writes through."""
        return self._store

    @property
    def layout(self) -> Layout:
        return "keys" if self.buckets is None else "buckets"

    def over(self, store: Store) -> MatchTable:
        """This table (layout, lifetime) through another store object of the same backend,
        e.g. the one behind a request's deadlines; its layout is not read again."""
        table = copy.copy(self)
        table._store = store
        table._swaps = SwapCoalescer(store)
        return table

    @classmethod
    async def open(
        cls,
        store: Store,
        nid: str,
        *,
        ttl_seconds: float,
        clock: Clock,
        layout: LayoutChoice = "auto",
        expected_entries: int = 100_000_000,
        auto_layout: Layout = "buckets",
    ) -> MatchTable:
        """The table as recorded in its meta key, creating that record on first use.

        ``auto`` takes the recorded layout, else ``auto_layout``. A new ``buckets`` table
        gets ``Buckets.for_entries(expected_entries)`` buckets. Once recorded, the bucket count
        is kept (a different count would lose every entry: a warning is logged), and an
        explicit layout other than the recorded one is a ConfigError.
        """
        keys = MatchKeys(nid)
        raw = await store.get(keys.meta)
        wanted = auto_layout if layout == "auto" else layout
        sized = Buckets.for_entries("", expected_entries).buckets
        if raw is None:
            buckets = sized if wanted == "buckets" else None
            await store.set(keys.meta, _meta_value(buckets))
            return cls(store, nid, ttl_seconds=ttl_seconds, clock=clock, buckets=buckets)
        buckets = _parse_meta(raw, keys.meta)
        recorded: Layout = "keys" if buckets is None else "buckets"
        if layout != "auto" and layout != recorded:
            raise ConfigError(
                f"the match table of {nid!r} in this store uses the {recorded!r} layout "
                f"(recorded in {keys.meta!r}); set match_table_layout = {recorded!r} or "
                '"auto", or copy the table to an empty store',
                key="buyer.match_table_layout",
            )
        if buckets is not None and buckets != sized:
            log.warning(
                "match table %s: keeping its %d buckets per direction (expected entries would "
                "give %d; changing the count needs a copy)",
                nid,
                buckets,
                sized,
            )
        return cls(store, nid, ttl_seconds=ttl_seconds, clock=clock, buckets=buckets)

    async def record(self, gid: str, uid: bytes, cver: int) -> MatchEntry:
        """Upsert both directions at the clock's time, removing the pairings this one replaces.

        One store call writes both directions and answers what they held before (the read
        folded into the write: ``swap_many`` with ``keys``, one transaction of SQLite's
        writer; ``swap_together`` of both buckets' fields with ``buckets``, one script per
        bucket on Redis), with the other matches of this turn of the event loop
        (``SwapCoalescer``). Only when either held another id (a rotated gid, a cleared
        cookie), one look-up checks that the other id's entry still names this one back, and
        one more write removes it (``write_many`` with ``keys``; one ``hdel`` per bucket,
        concurrently, with ``buckets``).
        """
        entry = MatchEntry(gid, uid, cver, int(self._clock()))
        forward, reverse = MatchCodec.pack_by_gid(entry), MatchCodec.pack_by_uid(entry)
        if self.buckets is None:
            forward_raw, reverse_raw = await self._swaps.swap_many(
                [
                    Write(self.keys.by_gid(gid), forward, self._ttl),
                    Write(self.keys.by_uid(uid), reverse, self._ttl),
                ]
            )
        else:
            g_key, g_field = self.buckets.by_gid(gid)
            u_key, u_field = self.buckets.by_uid(uid)
            held = await self._swaps.swap_together(
                (), [(g_key, {g_field: forward}, None), (u_key, {u_field: reverse}, None)]
            )
            forward_raw, reverse_raw = held[0].get(g_field), held[1].get(u_field)
        before_gid = self._decode_gid(gid, forward_raw)
        before_uid = self._decode_uid(uid, reverse_raw)
        stale_gids, stale_uids = await self._still_paired(
            gid,
            uid,
            old_gid=before_uid.gid if before_uid is not None and before_uid.gid != gid else None,
            old_uid=before_gid.uid if before_gid is not None and before_gid.uid != uid else None,
        )
        if self.buckets is None:
            if stale_gids or stale_uids:
                await self._store.write_many(
                    [Write(self.keys.by_gid(g), None) for g in stale_gids]
                    + [Write(self.keys.by_uid(u), None) for u in stale_uids]
                )
        elif stale_gids or stale_uids:
            await self._delete_fields(stale_gids, stale_uids)
        return entry

    async def _still_paired(
        self, gid: str, uid: bytes, *, old_gid: str | None, old_uid: bytes | None
    ) -> tuple[list[str], list[bytes]]:
        """The entries a new pairing of ``gid`` and ``uid`` replaces: ``old_gid``'s forward
        entry if it still names ``uid``, ``old_uid``'s reverse entry if it still names ``gid``
        (read together)."""
        if old_gid is None and old_uid is None:
            return [], []
        forward, reverse = await _together(
            self._read_gids([] if old_gid is None else [old_gid]),
            self._read_uids([] if old_uid is None else [old_uid]),
        )
        stale_gids: list[str] = []
        stale_uids: list[bytes] = []
        if old_gid is not None:
            named = self._decode_gid(old_gid, forward[0])
            if named is not None and named.uid == uid:
                stale_gids.append(old_gid)
        if old_uid is not None:
            naming = self._decode_uid(old_uid, reverse[0])
            if naming is not None and naming.gid == gid:
                stale_uids.append(old_uid)
        return stale_gids, stale_uids

    async def erase(self, gids: Iterable[str] = (), uids: Iterable[bytes] = ()) -> Erased:
        """Remove what the table holds about ``gids`` and ``uids``, both directions.

        Every gid's forward entry goes; every uid, given or named by one of those entries,
        loses its reverse entry and the forward entry that one names, if it names the uid
        back. Lapsed entries (``buckets``) and unreadable values are removed too: they are
        still stored. Three look-ups at most (the gids, the uids, the gids the uids name),
        then the deletes issued together: one ``write_many`` (``keys``: one transaction) or
        one ``hdel`` per map key, concurrently (``buckets``). Safe to repeat after a failure.
        """
        gid_list = list(dict.fromkeys(gids))
        forward = await self._read_gids(gid_list)
        doomed_gids = {g for g, raw in zip(gid_list, forward, strict=True) if raw is not None}
        named = [self._decode_gid(g, raw) for g, raw in zip(gid_list, forward, strict=True)]
        uid_list = list(dict.fromkeys([*uids, *(e.uid for e in named if e is not None)]))
        reverse = await self._read_uids(uid_list)
        doomed_uids = {u for u, raw in zip(uid_list, reverse, strict=True) if raw is not None}
        back = [
            (e.gid, u)
            for u, raw in zip(uid_list, reverse, strict=True)
            if (e := self._decode_uid(u, raw)) is not None and e.gid not in doomed_gids
        ]
        if back:
            found = await self._read_gids([g for g, _ in back])
            for (g, u), raw in zip(back, found, strict=True):
                entry = self._decode_gid(g, raw)
                if entry is not None and entry.uid == u:
                    doomed_gids.add(g)
        gone_gids, gone_uids = sorted(doomed_gids), sorted(doomed_uids)
        if self.buckets is None:
            writes = [Write(self.keys.by_gid(g), None) for g in gone_gids]
            writes += [Write(self.keys.by_uid(u), None) for u in gone_uids]
            if writes:
                await self._store.write_many(writes)
        else:
            await self._delete_fields(gone_gids, gone_uids)
        return Erased(len(gone_gids), len(gone_uids))

    async def held(self, uid: bytes) -> list[HeldEntry]:
        """Every entry about ``uid``, as stored (lapsed ones included): its reverse entry and
        the forward entry that one names, if it names the uid back. ``expires_in_seconds`` is
        the store's TTL (``keys``); ``buckets`` entries have none: they are kept until
        overwritten or erased (None), and stop being used once lapsed."""
        key, field = self._locate_uid(uid)
        reverse = await self._read_entry(key, field)
        if reverse is None:
            return []
        entry = self._decode_uid(uid, reverse[0])
        held = [HeldEntry("by_uid", key, field, entry, reverse[1])]
        if entry is None:
            return held
        key, field = self._locate_gid(entry.gid)
        forward = await self._read_entry(key, field)
        named = None if forward is None else self._decode_gid(entry.gid, forward[0])
        if forward is not None and named is not None and named.uid == uid:
            held.append(HeldEntry("by_gid", key, field, named, forward[1]))
        return held

    async def match_times(self) -> AsyncIterator[int]:
        """The match time of every live pairing (its forward entry), scanning the whole table:
        plain keys ``bm:{nid}:g:`` (``keys``) or the forward buckets, lapsed fields skipped
        (``buckets``). Unreadable values are logged and skipped. For a periodic count, never
        on a request: in no particular order, in constant memory (``in_order=False``; on
        Redis an entry may come twice while Redis resizes its table)."""
        prefix = self.keys.by_gid("")  # also the forward buckets' prefix
        if self.buckets is None:
            async for page in self._store.scan_pages(prefix, in_order=False):
                for _, value in page:
                    if (entry := self._decode_gid("", value)) is not None:
                        yield entry.updated_at
            return
        async for _, fields in self._store.scan_maps(prefix, in_order=False):
            for value, _ttl in fields.values():
                entry = self._decode_gid("", value)
                if entry is not None and self._live(entry) is not None:
                    yield entry.updated_at

    def lapses_at(self, entry: MatchEntry) -> float:
        """When ``entry`` stops being used (its store TTL, or its age past the TTL)."""
        return entry.updated_at + self._ttl

    def _locate_gid(self, gid: str) -> tuple[str, str | None]:
        return (self.keys.by_gid(gid), None) if self.buckets is None else self.buckets.by_gid(gid)

    def _locate_uid(self, uid: bytes) -> tuple[str, str | None]:
        return (self.keys.by_uid(uid), None) if self.buckets is None else self.buckets.by_uid(uid)

    async def _read_entry(self, key: str, field: str | None) -> FieldEntry | None:
        """One stored value with its store lifetime, lapsed or not."""
        if field is None:
            return await self._store.get_entry(key)
        raw = await self._store.hget(key, field)
        return None if raw is None else (raw, None)

    async def _read_gids(self, gids: Sequence[str]) -> list[bytes | None]:
        if not gids:
            return []
        if self.buckets is None:
            return await self._store.get_many([self.keys.by_gid(g) for g in gids])
        return list(await asyncio.gather(*(self.read_gid(g) for g in gids)))

    async def _read_uids(self, uids: Sequence[bytes]) -> list[bytes | None]:
        if not uids:
            return []
        if self.buckets is None:
            return await self._store.get_many([self.keys.by_uid(u) for u in uids])
        return list(await asyncio.gather(*(self._read_uid(u) for u in uids)))

    async def _delete_fields(self, gids: Sequence[str], uids: Sequence[bytes]) -> None:
        """``buckets``: one ``hdel`` per map key, concurrently."""
        assert self.buckets is not None
        located = [self.buckets.by_gid(g) for g in gids] + [self.buckets.by_uid(u) for u in uids]
        by_key: dict[str, list[str]] = {}
        for key, field in located:
            by_key.setdefault(key, []).append(field)
        await asyncio.gather(*(self._store.hdel(key, fields) for key, fields in by_key.items()))

    @staticmethod
    def _decode_gid(gid: str, raw: bytes | None) -> MatchEntry | None:
        """A stored forward value, or None (absent, or unreadable: logged, never followed)."""
        if raw is None:
            return None
        try:
            return MatchCodec.unpack_by_gid(gid, raw)
        except StorageError as exc:
            log.warning("match table: %s", exc)
            return None

    @staticmethod
    def _decode_uid(uid: bytes, raw: bytes | None) -> MatchEntry | None:
        """A stored reverse value, or None (absent, or unreadable: logged, never followed)."""
        if raw is None:
            return None
        try:
            return MatchCodec.unpack_by_uid(uid, raw)
        except StorageError as exc:
            log.warning("match table: %s", exc)
            return None

    async def by_gid(self, gid: str) -> MatchEntry | None:
        return (await self.lookup(gid, None)).by_gid

    async def by_uid(self, uid: bytes) -> MatchEntry | None:
        return (await self.lookup(None, uid)).by_uid

    async def lookup(self, gid: str | None, uid: bytes | None) -> Lookup:
        """Both entries that exist among ``gid`` and ``uid``: one ``get`` (``keys``) or
        ``hget`` (``buckets``) for one id; for both, one ``get_many`` or the two ``hget``s issued
        together, pipelined by the store."""
        if uid is None:
            if gid is None:
                return _NOTHING
            return Lookup(self.entry_by_gid(gid, await self.read_gid(gid)))
        if gid is None:
            return Lookup(None, self._entry_by_uid(uid, await self._read_uid(uid)))
        if self.buckets is None:
            keys = [self.keys.by_gid(gid), self.keys.by_uid(uid)]
            forward, reverse = await self._store.get_many(keys)
        else:
            forward, reverse = await _together(self.read_gid(gid), self._read_uid(uid))
        return Lookup(self.entry_by_gid(gid, forward), self._entry_by_uid(uid, reverse))

    def read_gid(self, gid: str) -> Awaitable[bytes | None]:
        """The stored forward value of ``gid`` (lapsed included): one ``get`` (read with the
        other reads of this turn of the event loop where the store has ``batched_reads``) or
        ``hget`` (those of a turn in one ``hget_many`` where the store gathers them:
        ``Store.hget_batched``); :meth:`entry_by_gid` reads it."""
        store = self._store
        if self.buckets is None:
            key = self.keys.by_gid(gid)
            return store.get_batched(key) if store.batched_reads else store.get(key)
        return store.hget_batched(*self.buckets.by_gid(gid))

    def _read_uid(self, uid: bytes) -> Awaitable[bytes | None]:
        if self.buckets is None:
            return self._store.get(self.keys.by_uid(uid))
        return self._store.hget(*self.buckets.by_uid(uid))

    def entry_by_gid(self, gid: str, value: bytes | None) -> MatchEntry | None:
        """The live entry in a value :meth:`read_gid` gave; StorageError if unreadable."""
        if value is None:
            return None
        entry = MatchCodec.unpack_by_gid(gid, value)
        return entry if self.buckets is None else self._live(entry)

    def _entry_by_uid(self, uid: bytes, value: bytes | None) -> MatchEntry | None:
        return None if value is None else self._live(MatchCodec.unpack_by_uid(uid, value))

    def _live(self, entry: MatchEntry) -> MatchEntry | None:
        """Bucketed entries have no store TTL: one older than the TTL reads as absent."""
        if self.buckets is None or entry.updated_at + self._ttl > self._clock():
            return entry
        return None
