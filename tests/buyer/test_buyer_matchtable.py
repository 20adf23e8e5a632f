"""The match table in both layouts, on a real SQLite store and on a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cookiematch.buyer.matchtable import (
    MatchBuckets,
    MatchCodec,
    MatchEntry,
    MatchKeys,
    MatchTable,
    gid_bytes,
)
from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.errors import ConfigError, StorageError
from cookiematch.storage import Store, open_store
from cookiematch.storage.guard import GuardedStore
from storage.redis_servers import RedisServer, require_redis

from .conftest import GID, NID, Clock
from .stored import stored_about

UID = bytes(range(16))
OTHER_UID = bytes(range(1, 17))
THIRD_UID = bytes(range(2, 18))
CANONICAL_GID = "CAESEHQzSkjqVcFNjkyYcfsEXwM"  # 20 bytes, like real google_gids
LAYOUTS = {"keys": None, "buckets": 4}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_redis()
    server = RedisServer(tmp_path_factory.mktemp("buyer-redis"))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[Store]:
    """Overrides the conftest store: each backend (Redis needs a clock near real time)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'buyer.db'}"
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        with server.client() as client:
            client.flushall()
        url = server.url
        clock.now = float(int(time.time()))
    opened = open_store(url, clock=clock)
    await opened.start()
    yield opened
    await opened.close()


@pytest.fixture(params=list(LAYOUTS))
def table(request: pytest.FixtureRequest, store: Store, clock: Clock) -> MatchTable:
    buckets = LAYOUTS[request.param]
    return MatchTable(store, NID, ttl_seconds=28 * DAY, clock=clock, buckets=buckets)


@pytest.mark.parametrize("gid", [GID, CANONICAL_GID])
async def test_record_writes_both_directions(table: MatchTable, clock: Clock, gid: str) -> None:
    entry = await table.record(gid, UID, 1)
    assert entry == MatchEntry(gid, UID, 1, int(clock.now))
    assert await table.by_gid(gid) == entry
    assert await table.by_uid(UID) == entry


async def test_rematch_overwrites_and_updates_time(table: MatchTable, clock: Clock) -> None:
    start = clock.now
    await table.record(GID, UID, 1)
    clock.advance(3 * DAY)
    await table.record(GID, OTHER_UID, 2)
    entry = await table.by_gid(GID)
    assert entry == MatchEntry(GID, OTHER_UID, 2, int(start + 3 * DAY))
    assert await table.by_uid(OTHER_UID) == entry


async def test_entries_expire_after_their_ttl(table: MatchTable, clock: Clock) -> None:
    await table.record(GID, UID, 1)
    clock.advance(28 * DAY - 1)
    assert await table.by_gid(GID) is not None
    clock.advance(2)
    assert await table.by_gid(GID) is None
    assert await table.by_uid(UID) is None
    assert (await table.lookup(GID, UID)).newest is None


async def test_many_entries_share_buckets(table: MatchTable) -> None:
    uids = [i.to_bytes(16, "big") for i in range(40)]
    await asyncio.gather(*(table.record(f"gid{i:04d}", uid, i) for i, uid in enumerate(uids)))
    for i, uid in enumerate(uids):
        found = await table.lookup(f"gid{i:04d}", uid)
        assert found.by_gid is not None and found.by_gid.uid == uid and found.by_gid.cver == i
        assert found.by_uid is not None and found.by_uid.gid == f"gid{i:04d}"


class CountingStore:
    """Wraps a store; counts read calls and how many were in flight at once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def get(self, key: str) -> Awaitable[bytes | None]:
        return self._counted(self.store.get(key))

    @property
    def batched_reads(self) -> bool:
        return self.store.batched_reads

    def get_batched(self, key: str) -> Awaitable[bytes | None]:
        return self._counted(self.store.get_batched(key))

    def get_many(self, keys: Sequence[str]) -> Awaitable[list[bytes | None]]:
        return self._counted(self.store.get_many(keys))

    def hget(self, key: str, field: str) -> Awaitable[bytes | None]:
        return self._counted(self.store.hget(key, field))

    def hget_batched(self, key: str, field: str) -> Awaitable[bytes | None]:
        return self._counted(self.store.hget_batched(key, field))

    async def _counted(self, read: Awaitable[Any]) -> Any:
        """``read`` awaited, counted while in flight."""
        self._enter()
        try:
            return await read
        finally:
            self.in_flight -= 1

    def _enter(self) -> None:
        self.reads += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("known", ["gid", "uid", "both", "none"])
async def test_lookup_issues_its_reads_together(
    store: Store, clock: Clock, known: str, layout: str
) -> None:
    """``keys``: one read (get, or get_many for both ids); ``buckets``: one hget per id, all in
    flight at once."""
    buckets = LAYOUTS[layout]
    await MatchTable(store, NID, ttl_seconds=DAY, clock=clock, buckets=buckets).record(GID, UID, 1)
    counting = CountingStore(store)
    table = MatchTable(counting, NID, ttl_seconds=DAY, clock=clock, buckets=buckets)  # type: ignore[arg-type]
    gid = GID if known in ("gid", "both") else None
    uid = UID if known in ("uid", "both") else None
    found = await table.lookup(gid, uid)
    ids = (gid is not None) + (uid is not None)
    assert counting.reads == (min(ids, 1) if buckets is None else ids)
    assert counting.max_in_flight == counting.reads
    assert (found.by_gid is not None) == (gid is not None)
    assert (found.by_uid is not None) == (uid is not None)
    expected = None if known == "none" else MatchEntry(GID, UID, 1, int(clock.now))
    assert found.newest == expected


async def test_lookup_of_unknown_ids(table: MatchTable) -> None:
    found = await table.lookup("AAAA", OTHER_UID)
    assert found.by_gid is None and found.by_uid is None and found.newest is None


def test_layout_is_compact() -> None:
    entry = MatchEntry(GID, UID, 1, 1_700_000_000)
    assert len(MatchCodec.pack_by_gid(entry)) == 25
    assert len(MatchCodec.pack_by_uid(entry)) == 9 + len(GID)  # not canonical: kept as text
    canonical = MatchEntry(CANONICAL_GID, UID, 1, 1_700_000_000)
    assert len(MatchCodec.pack_by_uid(canonical)) == 9 + 20  # canonical: its bytes
    assert MatchCodec.unpack_by_uid(UID, MatchCodec.pack_by_uid(canonical)) == canonical
    keys = MatchKeys(NID)
    assert keys.by_gid(GID) == f"bm:{NID}:g:{GID}"
    assert keys.by_uid(UID) == f"bm:{NID}:u:AAECAwQFBgcICQoLDA0ODw"
    buckets = MatchBuckets(NID, 16)
    key, field = buckets.by_gid(CANONICAL_GID)
    assert key.startswith(f"bm:{NID}:g:") and "{" not in key and len(field) == 25
    key, field = buckets.by_uid(UID)
    assert key.startswith(f"bm:{NID}:u:") and len(field) == 20
    assert buckets.by_gid(GID)[1] == "." + GID


def test_gid_bytes_only_for_canonical_spellings() -> None:
    assert gid_bytes(CANONICAL_GID) is not None
    assert gid_bytes(GID) is None  # the document's example has non-zero trailing bits
    assert gid_bytes("AA") == b"\x00" and gid_bytes("AB") is None
    assert gid_bytes("QUI") == b"AB"
    assert gid_bytes("A") is None and gid_bytes("a+b/") is None
    # "AB" (as text) and "QUI" (bytes b"AB") must not share an entry
    buckets = MatchBuckets(NID, 1)
    assert buckets.by_gid("AB") != buckets.by_gid("QUI")


async def test_non_canonical_gid_does_not_collide(store: Store, clock: Clock) -> None:
    table = MatchTable(store, NID, ttl_seconds=DAY, clock=clock, buckets=1)
    await table.record("AB", UID, 1)
    assert await table.by_gid("QUI") is None
    assert (await table.by_uid(UID)).gid == "AB"  # type: ignore[union-attr]


async def test_buyers_sharing_a_store_do_not_see_each_other(
    table: MatchTable, store: Store, clock: Clock
) -> None:
    await table.record(GID, UID, 1)
    buckets = None if table.buckets is None else 4
    other = MatchTable(store, "two", ttl_seconds=DAY, clock=clock, buckets=buckets)
    assert await other.by_gid(GID) is None and await other.by_uid(UID) is None


@pytest.mark.parametrize("value", [b"", b"\x01short", b"\x02" + bytes(24)])
async def test_corrupt_values_are_storage_errors(
    table: MatchTable, store: Store, value: bytes
) -> None:
    if table.buckets is None:
        await store.set(table.keys.by_gid(GID), value)
    else:
        key, field = table.buckets.by_gid(GID)
        await store.hset(key, {field: value})
    with pytest.raises(StorageError):
        await table.by_gid(GID)


async def test_open_records_the_layout_and_keeps_it(store: Store, clock: Clock) -> None:
    opened = await MatchTable.open(
        store, NID, ttl_seconds=DAY, clock=clock, layout="buckets", expected_entries=1000
    )
    assert opened.layout == "buckets" and opened.buckets == MatchBuckets(NID, 16)
    await opened.record(GID, UID, 1)
    # auto follows the record; another expected size keeps the recorded bucket count
    again = await MatchTable.open(
        store, NID, ttl_seconds=DAY, clock=clock, expected_entries=10**6, auto_layout="keys"
    )
    assert again.buckets == MatchBuckets(NID, 16)
    assert await again.by_gid(GID) is not None
    with pytest.raises(ConfigError, match="'buckets' layout"):
        await MatchTable.open(store, NID, ttl_seconds=DAY, clock=clock, layout="keys")
    # another buyer in the same store: auto picks auto_layout and records it
    keys = await MatchTable.open(store, "two", ttl_seconds=DAY, clock=clock, auto_layout="keys")
    assert keys.layout == "keys"
    assert await store.get(keys.keys.meta) == b"keys"


async def test_the_same_table_over_a_guarded_store(store: Store, clock: Clock) -> None:
    """``over``: the layout read once, the calls through another store object of the backend
    (the server's routes get the one behind the request's deadlines)."""
    opened = await MatchTable.open(
        store, NID, ttl_seconds=DAY, clock=clock, layout="buckets", expected_entries=1000
    )
    calls: list[str] = []
    guarded = GuardedStore(store, deadline=1.0, on_call=lambda op, _s, _o: calls.append(op))
    table = opened.over(guarded)
    assert table.buckets == opened.buckets and calls == []
    await table.record(GID, UID, 1)
    assert calls and (await opened.by_gid(GID)) == (await table.by_gid(GID))


async def test_open_rejects_a_foreign_meta_value(store: Store, clock: Clock) -> None:
    await store.set(MatchKeys(NID).meta, b"buckets zero")
    with pytest.raises(StorageError, match="not a layout"):
        await MatchTable.open(store, NID, ttl_seconds=DAY, clock=clock)


class HalfBrokenStore:
    """Forward buckets fail; reverse reads wait a moment and find nothing."""

    async def hget(self, key: str, field: str) -> bytes | None:
        if ":g:" in key:
            raise StorageError("down")
        await asyncio.sleep(0.01)
        return None

    def hget_batched(self, key: str, field: str) -> Awaitable[bytes | None]:
        return self.hget(key, field)


async def test_a_failing_read_fails_the_lookup(clock: Clock) -> None:
    table = MatchTable(HalfBrokenStore(), NID, ttl_seconds=DAY, clock=clock, buckets=4)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="down"):
        await table.lookup(GID, UID)
    await asyncio.sleep(0.02)  # the other read was cancelled, not left running


# -- one pairing per id: a match replaces the pairings of its gid and its uid ------------------

OLD_GID = "b2xkLWdpZA"
ROTATED_GID = "CAESEHQzSkjqVcFNjkyYcfsEYYY"  # the same browser under another key version


def _located(table: MatchTable, direction: str, gid: str = "", uid: bytes = b"") -> str:
    """Where an entry is: its plain key, or ``key/field`` of its bucket."""
    if table.buckets is None:
        return table.keys.by_gid(gid) if direction == "g" else table.keys.by_uid(uid)
    key, field = table.buckets.by_gid(gid) if direction == "g" else table.buckets.by_uid(uid)
    return f"{key}/{field}"


async def test_a_new_gid_for_a_uid_removes_the_old_gids_entry(
    table: MatchTable, store: Store
) -> None:
    await table.record(OLD_GID, UID, 1)
    await table.record(GID, UID, 1)  # the exchange rotated its key: the browser's gid changed
    assert await table.by_gid(OLD_GID) is None
    assert (await table.by_uid(UID)) == await table.by_gid(GID)
    assert await stored_about(store, NID, gids=[OLD_GID]) == []


async def test_a_new_uid_for_a_gid_removes_the_old_uids_entry(
    table: MatchTable, store: Store
) -> None:
    await table.record(GID, UID, 1)
    await table.record(GID, OTHER_UID, 1)  # the buyer cookie was cleared
    assert await table.by_uid(UID) is None
    assert await stored_about(store, NID, uids=[UID]) == []
    assert (await table.by_gid(GID)).uid == OTHER_UID  # type: ignore[union-attr]


async def _put_forward(table: MatchTable, store: Store, entry: MatchEntry) -> None:
    """Write a forward entry alone, as a version without one pairing per id could leave it."""
    if table.buckets is None:
        await store.set(table.keys.by_gid(entry.gid), MatchCodec.pack_by_gid(entry))
    else:
        key, field = table.buckets.by_gid(entry.gid)
        await store.hset(key, {field: MatchCodec.pack_by_gid(entry)})


async def test_a_replaced_entry_that_names_another_id_is_kept(
    table: MatchTable, store: Store, clock: Clock
) -> None:
    """Only an entry that still names the new pairing's id back is removed (an older version
    left entries that do not)."""
    now = int(clock.now)
    await table.record(OLD_GID, UID, 1)
    await _put_forward(table, store, MatchEntry(OLD_GID, OTHER_UID, 1, now))
    await table.record(GID, UID, 2)  # UID's old gid names OTHER_UID now: kept
    assert (await table.by_gid(OLD_GID)).uid == OTHER_UID  # type: ignore[union-attr]
    await _put_forward(table, store, MatchEntry(ROTATED_GID, UID, 1, now))
    await table.record(ROTATED_GID, THIRD_UID, 3)  # UID's entry names GID: kept
    assert (await table.by_uid(UID)).gid == GID  # type: ignore[union-attr]


async def test_a_new_match_is_one_store_call(store: Store, clock: Clock) -> None:
    """A match that replaces nothing writes both directions and learns what they held in one
    store call (``swap_many``, or ``swap_together`` of the buckets' fields), with no read
    before it; a match that replaces a pairing reads the replaced id's entry and writes once
    more."""
    calls: list[str] = []

    def one_call(name: str) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any) -> Any:
            calls.append(name)
            return await getattr(store, name)(*args)

        return call

    for buckets in LAYOUTS.values():
        counting = CountingStore(store)
        table = MatchTable(counting, NID, ttl_seconds=DAY, clock=clock, buckets=buckets)  # type: ignore[arg-type]
        for name in ("swap_many", "swap_together", "write_many", "hset_many", "hdel"):
            setattr(counting, name, one_call(name))
        calls.clear()
        await table.record(GID, UID, 1)
        assert calls == ["swap_many" if buckets is None else "swap_together"]
        assert counting.reads == 0
        await table.record(GID, UID, 2)  # a refresh replaces nothing
        assert calls[1:] == calls[:1]
        assert counting.reads == 0
        calls.clear()
        await table.record(GID, OTHER_UID, 1)  # the cookie was cleared: UID's entry goes
        swapped = "swap_many" if buckets is None else "swap_together"
        assert calls == [swapped, "write_many" if buckets is None else "hdel"]
        assert counting.reads == 1
        await table.erase([GID])


async def test_erasing_a_uid_removes_both_directions(table: MatchTable, store: Store) -> None:
    await table.record(GID, UID, 1)
    await table.record(CANONICAL_GID, OTHER_UID, 1)
    assert await table.erase(uids=[UID]) == (1, 1)
    assert await stored_about(store, NID, uids=[UID], gids=[GID]) == []
    assert await table.by_uid(OTHER_UID) is not None  # another browser is untouched
    assert await table.erase(uids=[UID]) == (0, 0)  # repeating is harmless


async def test_erasing_the_gids_of_every_key_version(table: MatchTable, store: Store) -> None:
    """A notice names the browser's gid under every key version; a table written before
    one pairing per id may still hold an older one naming the same uid."""
    await table.record(GID, UID, 1)
    await _put_forward(table, store, MatchEntry(ROTATED_GID, UID, 1, int(time.time())))
    assert await table.erase([ROTATED_GID, GID, "bm90LWhlbGQ"]) == (2, 1)
    assert await stored_about(store, NID, uids=[UID], gids=[GID, ROTATED_GID]) == []


async def test_erasure_removes_lapsed_and_unreadable_entries(
    table: MatchTable, store: Store, clock: Clock
) -> None:
    await table.record(GID, UID, 1)
    if table.buckets is not None:
        clock.advance(29 * DAY)  # lapsed: not used any more, still stored
        assert await table.by_uid(UID) is None
        assert len(await stored_about(store, NID, uids=[UID])) == 2
    if table.buckets is None:
        await store.set(table.keys.by_uid(OTHER_UID), b"\x09garbage")
    else:
        key, field = table.buckets.by_uid(OTHER_UID)
        await store.hset(key, {field: b"\x09garbage"})
    assert await table.erase(uids=[UID, OTHER_UID]) == (1, 2)
    assert await stored_about(store, NID, uids=[UID, OTHER_UID], gids=[GID]) == []


async def test_held_lists_both_entries_with_their_lifetimes(
    table: MatchTable, clock: Clock
) -> None:
    assert await table.held(UID) == []
    entry = await table.record(GID, UID, 7)
    held = await table.held(UID)
    assert [(h.direction, h.entry) for h in held] == [("by_uid", entry), ("by_gid", entry)]
    assert [h.key if h.field is None else f"{h.key}/{h.field}" for h in held] == [
        _located(table, "u", uid=UID),
        _located(table, "g", gid=GID),
    ]
    for h in held:
        if table.buckets is None:  # the store's TTL
            assert h.expires_in_seconds == pytest.approx(28 * DAY, abs=2)
        else:  # no store TTL: kept until overwritten or erased
            assert h.expires_in_seconds is None
    assert table.lapses_at(entry) == entry.updated_at + 28 * DAY
