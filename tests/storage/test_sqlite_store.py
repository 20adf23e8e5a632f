"""What is particular to the SQLite backend: URLs, opening, group commit, purge, errors."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import multiprocessing
import os
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.storage import Durability, Write, open_store, sqlite_ops, sqlite_schema
from cookiematch.storage.packed import pack, unpack
from cookiematch.storage.sqlite import (
    CACHE_MIB,
    GROUP_COMMIT_CACHE_MIB,
    WRITER_LOCK_SUFFIX,
    WRITER_TURN_SUFFIX,
    SQLiteStore,
    path_from_url,
    prefix_upper_bound,
)

if TYPE_CHECKING:
    from .conftest import FakeClock


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/cm/store.db", "/var/lib/cm/store.db"),
        ("sqlite://data/store.db", "data/store.db"),
        ("SQLITE:///a%20b.db", "/a b.db"),
    ],
)
def test_path_from_url(url: str, path: str) -> None:
    assert path_from_url(url) == path


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite://:memory:",
        "sqlite:///x.db?mode=ro",
    ],
)
def test_bad_sqlite_urls(url: str) -> None:
    with pytest.raises(StorageError, match="sqlite URL"):
        open_store(url)


def test_unknown_scheme_is_named() -> None:
    with pytest.raises(StorageError, match="'mongodb'"):
        open_store("mongodb://localhost/db")
    with pytest.raises(StorageError, match="no scheme"):
        open_store("/var/lib/store.db")


async def test_relative_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    store = open_store("sqlite://data/s.db")
    await store.set("k", b"v")
    await store.close()
    assert rows(tmp_path / "data" / "s.db", "SELECT key, value FROM kv") == [("k", b"v")]


@pytest.mark.parametrize(
    ("prefix", "bound"),
    [
        ("", None),
        ("ab", "ac"),
        ("a\U0010ffff", "b"),
        ("\U0010ffff\U0010ffff", None),
        ("x\ud7ff", "x\ue000"),
        ("a\x00", "a\x01"),
    ],
)
def test_prefix_upper_bound(prefix: str, bound: str | None) -> None:
    assert prefix_upper_bound(prefix) == bound


# --- opening: errors surface at open, as StoreUnavailable ------------------------------------


def test_open_in_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="cannot open") as err:
        open_store(f"sqlite:///{tmp_path}/missing/store.db")
    assert isinstance(err.value.__cause__, sqlite3.Error)


def test_open_a_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable) as err:
        open_store(f"sqlite:///{tmp_path}")
    assert isinstance(err.value.__cause__, sqlite3.Error)


def test_open_a_file_that_is_not_a_database(db: Path) -> None:
    db.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(StoreUnavailable) as err:
        open_store(f"sqlite:///{db}")
    assert isinstance(err.value.__cause__, sqlite3.DatabaseError)


def test_open_a_newer_schema(db: Path) -> None:
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreUnavailable, match="newer"):
        open_store(f"sqlite:///{db}")


async def test_file_is_in_wal_mode_and_reopens(db: Path) -> None:
    store = open_store(f"sqlite:///{db}")
    await store.set("k", b"v")
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]
    await store.close()
    store = open_store(f"sqlite:///{db}")
    assert await store.get("k") == b"v"
    await store.close()


@pytest.mark.parametrize(
    ("durability", "mib"), [(Durability.ACK, GROUP_COMMIT_CACHE_MIB), (Durability.ASYNC, CACHE_MIB)]
)
async def test_writer_page_cache_follows_durability(
    db: Path, durability: Durability, mib: int
) -> None:
    """Group commits get a small writer cache (SQLite walks the whole cache at commits that
    renumbered pages); a bulk writer a large one, for its transactions of thousands."""
    store = SQLiteStore(str(db), durability=durability)
    try:
        writer = store._engine._wconn  # idle: nothing written yet
        assert writer.execute("PRAGMA cache_size").fetchone() == (-mib * 1024,)
        assert GROUP_COMMIT_CACHE_MIB < CACHE_MIB
    finally:
        await store.close()


# --- group commit, backpressure, purge --------------------------------------------------------


async def test_concurrent_writes_share_commits(db: Path) -> None:
    store = SQLiteStore(str(db))
    await asyncio.gather(*(store.set(f"k{i}", b"v") for i in range(1000)))
    assert store.writes == 1000
    assert store.commits <= 100  # one fsync covers a whole batch
    await store.close()


async def test_an_acknowledged_write_waited_for_an_fsync_of_the_wal(db: Path) -> None:
    """``ack``: the writer commits without an fsync (``synchronous=NORMAL``) and a write is
    acknowledged once the syncer has fsynced the WAL after its commit; one fsync covers one
    commit or more."""
    store = SQLiteStore(str(db))
    try:
        assert store._engine._wconn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        for i in range(3):
            before = store._engine.syncs
            await store.set(f"k{i}", b"v")
            assert store._engine.syncs == before + 1
        await asyncio.gather(*(store.set(f"many{i}", b"v") for i in range(1000)))
        assert 3 < store._engine.syncs <= store.commits
        assert await store.get("many999") == b"v"
    finally:
        await store.close()


async def test_a_write_whose_wal_cannot_be_synced_is_not_acknowledged(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A WAL nobody can fsync any more (here: unlinked; SQLite writes on to the file it holds
    open) fails the writes committed to it, and every later one: the store is unavailable
    (its ping fails) until restarted."""
    store = SQLiteStore(str(db))
    try:
        await store.set("before", b"v")  # the syncer holds the WAL open from here on
        await store.ping()
        os.unlink(f"{db}-wal")
        with pytest.raises(StoreUnavailable, match="not known to be on disk"):
            await store.set("after", b"v")
        assert "cannot sync the WAL" in caplog.text
        with pytest.raises(StoreUnavailable, match="not known to be on disk"):
            await store.set("later", b"v")
        assert not store._engine.writer_alive
        with pytest.raises(StoreUnavailable, match="fsync of its WAL failed"):
            await store.ping()
    finally:
        await store.close()


async def test_an_async_store_commits_with_no_syncer(db: Path) -> None:
    """``async``: acknowledged when queued; the writer's commits are not fsynced one by one
    (SQLite's checkpoints sync), so there is no syncer."""
    store = SQLiteStore(str(db), durability=Durability.ASYNC)
    try:
        await store.set("k", b"v")
        assert await store.get("k") == b"v"
        assert store._engine.syncs == 0
        assert store._engine._wconn.execute("PRAGMA synchronous").fetchone() == (1,)
    finally:
        await store.close()


async def test_async_mode_backpressure(db: Path) -> None:
    store = SQLiteStore(str(db), durability=Durability.ASYNC, max_pending=8)
    await asyncio.gather(*(store.set(f"k{i}", b"v") for i in range(1000)))
    assert len([k async for k, _ in store.scan("k")]) == 1000
    await store.close()


async def test_purge_expired_removes_rows(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(str(db), clock=clock)
    await store.set("a", b"1", ttl=1)
    await store.set("b", b"2")
    await store.hset("h", {"x": b"1"}, ttl=1)
    await store.hset("h", {"y": b"2"}, ttl=10)
    assert await store.purge_expired() == 0
    await clock.advance(2)
    assert await store.purge_expired() == 2  # the plain key and the map's field
    assert rows(db, "SELECT key FROM kv") == [("b",)]
    [(key, blob, expires_at)] = rows(db, "SELECT key, value, expires_at FROM fm")
    assert (key, expires_at) == ("h", pytest.approx(clock.now + 8))
    assert isinstance(blob, bytes)
    assert list(unpack(blob)) == ["y"]
    assert await store.purge_expired() == 0
    await store.close()


async def test_writer_purges_periodically(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(str(db), clock=clock, purge_interval=0.02)
    await store.write_many([])
    await asyncio.gather(*(store.set(f"k{i}", b"v", ttl=1) for i in range(2500)))
    await store.set("keep", b"v")
    await clock.advance(2)
    for _ in range(200):
        if rows(db, "SELECT count(*) FROM kv") == [(1,)]:
            break
        await asyncio.sleep(0.02)
    assert rows(db, "SELECT key FROM kv") == [("keep",)]  # more than one purge chunk
    await store.close()


# --- errors from SQLite are wrapped; a bad write fails alone ---------------------------------


async def test_locked_database_error_is_wrapped_and_store_recovers(db: Path) -> None:
    store = SQLiteStore(str(db), busy_timeout=0.05)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StorageError, match="locked") as err:
        await store.set("k", b"v")
    assert isinstance(err.value.__cause__, sqlite3.OperationalError)
    other.execute("ROLLBACK")
    other.close()
    await store.set("k", b"v")
    assert await store.get("k") == b"v"
    await store.close()


async def test_a_bad_write_fails_alone_in_its_batch(db: Path) -> None:
    store = SQLiteStore(str(db))
    names = [f"k{i}" for i in range(200)]
    names[100] = "bad\ud800"  # a lone surrogate cannot be encoded
    results = await asyncio.gather(*(store.set(k, b"v") for k in names), return_exceptions=True)
    assert isinstance(results[100], StorageError)
    assert isinstance(results[100].__cause__, UnicodeEncodeError)
    assert results[:100] + results[101:] == [None] * 199
    assert len([k async for k, _ in store.scan("k")]) == 199
    with pytest.raises(StorageError):
        await store.get("bad\ud800")
    await store.close()


async def test_queued_plain_writes_keep_their_order(db: Path) -> None:
    """Sets queued together become multi-row statements: a later write of a key still wins,
    across statements and around a ``write_many`` that deletes."""
    store = SQLiteStore(str(db), durability=Durability.ASYNC)
    for i in range(700):  # more rows than one statement carries
        await store.set(f"k{i % 50}", str(i).encode())
    await store.write_many([Write("k1", b"last"), Write("k2", None), Write("k3", b"x")])
    await store.set("k3", b"y")
    assert await store.get("k0") == b"650"
    assert await store.get("k49") == b"699"
    assert await store.get_many(["k1", "k2", "k3"]) == [b"last", None, b"y"]
    keys = [f"k{i}" for i in range(50)] * 11  # more keys than one IN (...) query
    assert len(await store.get_many(keys)) == 550
    await store.close()
    assert rows(db, "SELECT value FROM kv WHERE key = 'k3'") == [(b"y",)]


async def test_async_write_failure_is_logged(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SQLiteStore(str(db), durability=Durability.ASYNC)
    with caplog.at_level(logging.ERROR):
        await store.set("bad\ud800", b"v")  # returns once queued
        await store.close()
    assert "queued write failed" in caplog.text


# --- field maps: one packed row per key -------------------------------------------------------


async def test_a_field_map_is_one_row_with_its_earliest_expiry(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(str(db), clock=clock)
    await store.hset("h", {"a": b"1"})
    assert rows(db, "SELECT key, expires_at FROM fm") == [("h", None)]
    await store.hset_many([("h", {"b": b"2"}, 50.0), ("h", {"c": b"3"}, 10.0), ("g", {}, 1.0)])
    await store.hset("h", {"d": b"4"}, ttl=100)
    [(key, blob, expires_at)] = rows(db, "SELECT key, value, expires_at FROM fm")
    assert (key, expires_at) == ("h", pytest.approx(clock.now + 10))
    assert isinstance(blob, bytes)
    fields = unpack(blob)
    assert {f: v for f, (v, _) in fields.items()} == {"a": b"1", "b": b"2", "c": b"3", "d": b"4"}
    assert fields["a"][1] is None
    assert fields["b"][1] == pytest.approx(clock.now + 50)
    assert await store.hdel("h", ["c"]) == 1  # the earliest expiry moves on
    assert rows(db, "SELECT expires_at FROM fm") == [(pytest.approx(clock.now + 50),)]
    await store.close()


async def test_a_write_drops_the_expired_fields_of_its_map(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(str(db), clock=clock)
    await store.hset("h", {"old": b"1", "older": b"2"}, ttl=1)
    await store.hset("h", {"kept": b"3"}, ttl=10)
    await clock.advance(2)
    await store.hset_many([("h", {"new": b"4"}, None)])
    [(blob,)] = rows(db, "SELECT value FROM fm")
    assert isinstance(blob, bytes)
    assert sorted(unpack(blob)) == ["kept", "new"]
    await store.close()


async def test_hdel_of_the_last_live_field_deletes_the_row(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(str(db), clock=clock)
    await store.hset("h", {"a": b"1"}, ttl=1)
    await store.hset("h", {"b": b"2"})
    await clock.advance(2)
    assert await store.hdel("h", ["b", "b", "zz"]) == 1  # "a" had expired: nothing is left
    assert rows(db, "SELECT key FROM fm") == []
    await store.hset("h", {"a": b"1"}, ttl=1)
    await clock.advance(2)
    assert await store.hdel("h", ["a"]) == 0
    assert rows(db, "SELECT key FROM fm") == []
    await store.close()


async def test_purge_rewrites_maps_in_chunks(
    db: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_ops, "PURGE_CHUNK", 7)
    store = SQLiteStore(str(db), clock=clock)
    await store.hset_many([(f"m{i:02d}", {"x": b"1", "y": b"2"}, 1.0) for i in range(20)])
    await store.hset_many([(f"m{i:02d}", {"z": b"3"}, 10.0) for i in range(0, 20, 2)])
    await clock.advance(2)
    assert await store.purge_expired() == 40  # every x and y
    assert rows(db, "SELECT key FROM fm") == [(f"m{i:02d}",) for i in range(0, 20, 2)]
    assert rows(db, "SELECT DISTINCT expires_at FROM fm") == [(pytest.approx(clock.now + 8),)]
    assert await store.hgetall_many(["m00", "m01"]) == [{"z": b"3"}, {}]
    await store.close()


async def test_writer_purges_map_fields_periodically(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(str(db), clock=clock, purge_interval=0.02)
    await store.hset_many([(f"m{i:04d}", {"x": b"1"}, 1.0) for i in range(2500)])
    await store.hset_many([(f"m{i:04d}", {"y": b"2"}, None) for i in range(0, 2500, 5)])
    await clock.advance(2)
    for _ in range(200):
        if rows(db, "SELECT count(*) FROM fm") == [(500,)]:
            break
        await asyncio.sleep(0.02)
    assert rows(db, "SELECT count(*), count(expires_at) FROM fm") == [(500, 0)]
    await store.close()


async def test_a_damaged_map_row_is_a_storage_error(db: Path) -> None:
    store = SQLiteStore(str(db))
    await store.hset("h", {"a": b"1"})
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE fm SET value = x'c1'")
    with pytest.raises(StorageError):
        await store.hgetall("h")
    await store.close()


def test_pack_keeps_values_and_expiries() -> None:
    fields = {"a": (b"\x00" * 3, None), "ç": (b"", 1.5), "b": (b"v", 0.25)}
    blob, earliest = pack(fields)
    assert unpack(blob) == fields
    assert earliest == 0.25
    assert pack({"a": (b"1", None)})[1] is None


# --- migration from schema 1 (one row per field) ----------------------------------------------

SCHEMA_V1 = """
CREATE TABLE kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, expires_at REAL) WITHOUT ROWID;
CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE fm (
    key TEXT NOT NULL, field TEXT NOT NULL, value BLOB NOT NULL, expires_at REAL,
    PRIMARY KEY (key, field)
) WITHOUT ROWID;
CREATE INDEX fm_expiry ON fm (expires_at) WHERE expires_at IS NOT NULL;
PRAGMA user_version = 1;
"""


async def test_a_version_1_database_is_migrated(
    db: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_schema, "MIGRATE_CHUNK", 3)  # several inserts
    now = clock.now
    fm = [
        ("h", "a", b"1", None),
        ("h", "b", b"\x00", now + 100),
        ("h", "gone", b"x", now - 1),
        ("dead", "x", b"1", now - 5),
        *((f"m{i}", f"f{j}", b"%d" % (i * j), now + i + j) for i in range(5) for j in range(3)),
        ("z", "ç", b"3", now + 7),
    ]
    with closing(sqlite3.connect(db)) as conn:
        conn.executescript(SCHEMA_V1)
        with conn:
            conn.execute("INSERT INTO kv VALUES ('plain', x'01', ?)", (now + 50,))
            conn.executemany("INSERT INTO fm VALUES (?, ?, ?, ?)", fm)
    store = SQLiteStore(str(db), clock=clock)
    assert rows(db, "PRAGMA user_version") == [(2,)]
    names = rows(db, "SELECT name FROM sqlite_master WHERE tbl_name = 'fm' ORDER BY name")
    assert names == [("fm",), ("fm_expiry",)]  # and no fm_v1 left
    assert rows(db, "SELECT name FROM pragma_table_info('fm')") == [
        ("key",),
        ("value",),
        ("expires_at",),
    ]
    assert await store.get("plain") == b"\x01"
    assert await store.hgetall("h") == {"a": b"1", "b": b"\x00"}
    assert await store.hgetall("dead") == {}
    maps = {key: fields async for key, fields in store.scan_maps("", batch=2)}
    assert sorted(maps) == ["h", "m0", "m1", "m2", "m3", "m4", "z"]
    for key, field, value, expires_at in fm:
        if expires_at is None or expires_at > now:
            got_value, ttl = maps[key][field]
            assert got_value == value
            assert ttl == (None if expires_at is None else pytest.approx(expires_at - now))
    assert rows(db, "SELECT key, expires_at FROM fm WHERE key IN ('h', 'm4')") == [
        ("h", pytest.approx(now + 100)),
        ("m4", pytest.approx(now + 4)),
    ]
    await clock.advance(150)
    assert await store.hgetall("h") == {"a": b"1"}
    await store.close()
    store = SQLiteStore(str(db), clock=clock)  # opening again changes nothing
    assert await store.hgetall("h") == {"a": b"1"}
    await store.close()


async def test_a_field_name_that_is_not_a_string_is_refused(db: Path) -> None:
    store = SQLiteStore(str(db))
    await store.hset("h", {"a": b"1"})
    with pytest.raises(TypeError):
        await store.hset("h", {1: b"x"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        await store.hset_many([("h", {b"b": b"x"}, None)])  # type: ignore[dict-item]
    with pytest.raises(StorageError):
        await store.hset("h", {"bad\ud800": b"x"})
    assert await store.hgetall("h") == {"a": b"1"}  # the map is intact
    await store.close()


async def test_hsets_in_one_batch_apply_in_order_and_a_bad_one_fails_alone(
    db: Path, clock: FakeClock
) -> None:
    store = SQLiteStore(str(db), clock=clock)
    await store.hset("h", {"old": b"0"}, ttl=1)
    await clock.advance(2)
    fields = [{f"f{i % 3}": b"%d" % i} for i in range(300)]
    fields[100] = {"bad\ud800": b"x"}
    writes = [store.hset(f"m{i % 50:02d}", f) for i, f in enumerate(fields)]
    writes += [store.hset("h", {"a": b"1", "b": b"1"}, ttl=5), store.hset("h", {"a": b"2"})]
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert isinstance(results[100], StorageError)
    assert results[:100] + results[101:] == [None] * 301
    assert await store.hgetall("h") == {"a": b"2", "b": b"1"}
    assert await store.hgetall("m01") == {"f0": b"201", "f1": b"151", "f2": b"251"}
    commits = store.commits
    await asyncio.gather(*(store.hset(f"m{i % 50:02d}", {"g": b"%d" % i}) for i in range(300)))
    assert store.commits - commits < 100  # they shared transactions
    assert await store.hget("m01", "g") == b"251"
    await clock.advance(10)
    assert await store.hgetall("h") == {"a": b"2"}
    [(blob,)] = rows(db, "SELECT value FROM fm WHERE key = 'h'")
    assert isinstance(blob, bytes)
    assert sorted(unpack(blob)) == ["a", "b"]  # "old" was dropped by the merge
    await store.close()


async def test_interleaved_writes_of_one_batch_give_the_queued_order(db: Path) -> None:
    """A batch's plain-key writes and field-map writes each become one statement; deletes and
    conditional writes run in their place: every key ends as the queued order leaves it."""
    store = SQLiteStore(str(db))
    await store.set("gone", b"0")
    commits = store.commits
    writes = []
    for i in range(200):
        writes += [
            store.hset(f"m{i % 7}", {"f": b"%d" % i, f"g{i % 3}": b"%d" % i}),
            store.set(f"k{i % 11}", b"%d" % i),
            store.hset_many([(f"m{i % 5}", {"h": b"%d" % i}, None)]),
            store.write_many([Write(f"w{i % 13}", b"%d" % i)]),
        ]
        if i == 100:
            writes += [store.delete("gone"), store.set_if_absent("gone", b"again")]
            writes += [store.delete("k1"), store.hdel("m2", ["f"])]
    results = await asyncio.gather(*writes)
    assert store.commits - commits < 50  # they shared transactions
    assert results[404:408] == [True, True, True, 1]
    assert await store.get("gone") == b"again"
    assert await store.get_many(["k0", "k1", "k10"]) == [b"198", b"199", b"197"]
    assert await store.get_many(["w0", "w12"]) == [b"195", b"194"]
    assert await store.hgetall("m2") == {"f": b"198", "g0": b"198", "g1": b"184", "g2": b"191",
                                         "h": b"197"}  # fmt: skip
    assert await store.hgetall("m6") == {"f": b"195", "g0": b"195", "g1": b"181", "g2": b"188"}
    await store.close()


async def test_swaps_of_one_batch_answer_what_the_writes_queued_before_left(db: Path) -> None:
    """``swap_many`` joins its batch's one plain-key statement, its keys read in one query
    before it: each swap answers what the writes queued before it (in the batch or not)
    left, and a delete between them runs in its place."""
    store = SQLiteStore(str(db))
    await store.set("k", b"0")
    commits = store.commits
    calls: list[Awaitable[object]] = []
    for i in range(300):
        calls.append(store.swap_many([Write("k", b"%d" % (i + 1)), Write(f"own{i}", b"x")]))
        if i % 10 == 3:
            calls.append(store.write_together([Write("k", b"t%d" % i)], [("m", {"f": b"v"}, None)]))
        if i == 150:
            calls.append(store.delete("k"))
    answers = await asyncio.gather(*calls)
    assert store.commits - commits < 100  # they shared transactions
    swapped = [a for a in answers if isinstance(a, list)]
    assert [a[1] for a in swapped] == [None] * 300
    expected: list[bytes | None] = []
    value: bytes | None = b"0"
    for i in range(300):
        expected.append(value)
        value = b"%d" % (i + 1)
        if i % 10 == 3:
            value = b"t%d" % i
        if i == 150:
            value = None
    assert [a[0] for a in swapped] == expected
    assert await store.get("k") == b"300"
    await store.close()


async def test_reads_after_a_swap_see_the_writes_of_its_batch(db: Path) -> None:
    """A ``swap_together``'s ``read_after`` maps are read in its batch's transaction after the
    batch's writes: a map written by an op queued before or after it in the batch is seen."""
    store = SQLiteStore(str(db))
    calls: list[Awaitable[object]] = []
    for i in range(200):
        calls.append(store.hset_many([(f"pend{i}", {"rec": b"%d" % i}, None)]))
        calls.append(
            store.swap_together(
                [Write(f"rev{i}", b"x")], [("m", {"f": b"%d" % i}, None)], [f"pend{i}"]
            )
        )
    answers = await asyncio.gather(*calls)
    swapped = [a for a in answers if isinstance(a, list)]
    assert [a[1] for a in swapped] == [{"rec": b"%d" % i} for i in range(200)]
    await store.close()


async def test_map_swaps_of_one_batch_answer_what_the_writes_queued_before_left(
    db: Path,
) -> None:
    """``swap_together`` joins its batch's map merge: each answers what the map writes queued
    before it (in the batch or not) left in its fields."""
    store = SQLiteStore(str(db))
    await store.hset("m", {"f": b"0", "other": b"o"})
    commits = store.commits
    calls: list[Awaitable[object]] = []
    for i in range(300):
        calls.append(
            store.swap_together([Write(f"r{i}", b"x")], [("m", {"f": b"%d" % (i + 1)}, None)])
        )
        if i % 10 == 3:
            calls.append(store.hset_many([("m", {"f": b"h%d" % i}, None)]))
        if i == 150:
            calls.append(store.hdel("m", ["f"]))
    answers = await asyncio.gather(*calls)
    assert store.commits - commits < 100  # they shared transactions
    swapped = [a for a in answers if isinstance(a, list)]
    expected: list[dict[str, bytes]] = []
    value: bytes | None = b"0"
    for i in range(300):
        expected.append({} if value is None else {"f": value})
        value = b"h%d" % i if i % 10 == 3 else b"%d" % (i + 1)
        if i == 150:
            value = None
    assert swapped == [[e] for e in expected]
    assert await store.hgetall("m") == {"f": b"300", "other": b"o"}
    assert await store.get("r299") == b"x"
    await store.close()


async def test_map_swaps_of_one_batch_answer_past_the_writes_of_their_also(db: Path) -> None:
    """An ``also`` write joins its batch's merge: a later swap of its field answers it, and
    the swap that carried it answers only its own field writes."""
    store = SQLiteStore(str(db))
    await store.hset("shared", {"f": b"0"})
    answers = await asyncio.gather(
        *(
            store.swap_together(
                [], [(f"own{i}", {"g": b"%d" % i}, None)], also=[("shared", {"f": b"%d" % i}, None)]
            )
            for i in range(1, 50)
        ),
        store.swap_together([], [("shared", {"f": b"last"}, None)]),
    )
    assert answers[:-1] == [[{}]] * 49
    assert answers[-1] == [{"f": b"49"}]
    assert await store.hgetall("shared") == {"f": b"last"}
    assert await store.hgetall("own7") == {"g": b"7"}
    await store.close()


async def test_point_reads_of_one_batch_share_queries_and_a_bad_one_fails_alone(
    db: Path, clock: FakeClock
) -> None:
    """Concurrent reads are answered from one query per table, each at its own time: expired
    values and fields are absent, and a key that cannot be encoded fails only its own read."""
    store = SQLiteStore(str(db), clock=clock, readers=1)
    await store.write_many([Write(f"k{i}", b"%d" % i, ttl=1 if i % 2 else None) for i in range(6)])
    await store.hset("m", {"a": b"1"}, ttl=1)
    await store.hset("m", {"b": b"2"})
    await clock.advance(2)
    reads = []
    for _ in range(50):
        reads += [
            store.get("k0"),
            store.get("k1"),
            store.get_many(["k2", "k3", "nope", "k2"]),
            store.hget("m", "a"),
            store.hget("m", "b"),
            store.hgetall("m"),
            store.hgetall("none"),
        ]
    reads.insert(100, store.get("bad\ud800"))
    results = await asyncio.gather(*reads, return_exceptions=True)
    assert isinstance(results.pop(100), StorageError)
    expected = [b"0", None, [b"2", None, None, b"2"], None, b"2", {"b": b"2"}, {}]
    assert results == expected * 50
    await store.close()


# --- batched reads ----------------------------------------------------------------------------


async def test_get_batched_reads_what_get_reads(db: Path, clock: FakeClock) -> None:
    """``get_batched`` (the event loop's own connection, a turn's reads together) sees every
    acknowledged write, expiry included, as ``get`` does; a closed store refuses it."""
    store = SQLiteStore(str(db), clock=clock)
    try:
        assert store.batched_reads
        assert await store.get_batched("k") is None
        await store.set("k", b"v1", ttl=10)
        await store.write_many([Write("k2", b"v2"), Write("k", b"v3", 10)])
        together = await asyncio.gather(store.get_batched("k"), store.get_batched("k2"))
        assert together == [b"v3", b"v2"] == await store.get_many(["k", "k2"])
        await store.hset("m", {"f": b"1"})
        assert await store.get_batched("m") is None  # a field map is not a plain value
        await clock.advance(11)
        assert await store.get_batched("k") is None and await store.get("k") is None
        await store.delete("k2")
        assert await store.get_batched("k2") is None
    finally:
        await store.close()
    with pytest.raises(StoreUnavailable):
        await store.get_batched("k")


async def test_no_batched_reads_under_async_durability(db: Path) -> None:
    """Under ASYNC a read waits for the writes queued before it: never on the loop."""
    store = SQLiteStore(str(db), durability=Durability.ASYNC)
    try:
        assert not store.batched_reads
        with pytest.raises(NotImplementedError):
            await store.get_batched("k")
    finally:
        await store.close()


async def test_get_batched_on_a_broken_file_is_a_storage_error(db: Path) -> None:
    """Every read of the failed statement gets the error."""
    store = SQLiteStore(str(db))
    try:
        await store.set("k", b"v")
        with closing(sqlite3.connect(db)) as conn:  # another process drops the table
            conn.execute("DROP TABLE kv")
            conn.commit()
        results = await asyncio.gather(
            store.get_batched("k"), store.get_batched("j"), return_exceptions=True
        )
        assert len(results) == 2
        assert all(isinstance(r, StorageError) and "sqlite" in str(r) for r in results)
    finally:
        await store.close()


# --- the writer lock of several processes ---------------------------------------------------

HOLD_WRITER_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)  # as another process's writer in a long transaction
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


@contextlib.contextmanager
def writer_lock_held(db: Path, suffix: str = WRITER_LOCK_SUFFIX) -> Iterator[None]:
    """Another process holding the store's writer lock (or, by ``suffix``, the turn file a
    writer holds while it waits for the lock) until the block ends."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITER_LOCK, str(db) + suffix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        yield
    finally:
        child.communicate("")  # its stdin closed: it exits, the kernel drops its lock


LOCK_FILES = pytest.mark.parametrize(
    "suffix", [WRITER_LOCK_SUFFIX, WRITER_TURN_SUFFIX], ids=["writer lock", "waiting its turn"]
)


@LOCK_FILES
async def test_a_writer_lock_held_past_the_busy_timeout_fails_the_batch(
    db: Path, suffix: str
) -> None:
    """Another process's writer keeping the lock (or waiting for it ahead of this one) past
    the busy timeout: the batch fails with the store's error, as a busy SQLite's would (no
    hang); once it is free, writes go on."""
    store = SQLiteStore(str(db), busy_timeout=0.2, purge_interval=None)
    try:
        await store.set("before", b"1")
        with writer_lock_held(db, suffix):
            with pytest.raises(StorageError, match="locked"):
                await asyncio.wait_for(store.set("k", b"v"), 60)
            assert await store.get("before") == b"1"  # reads need no writer lock
        await store.set("k", b"v")
        assert await store.get("k") == b"v"
    finally:
        await store.close()


@LOCK_FILES
async def test_close_stops_a_writer_waiting_for_the_lock(db: Path, suffix: str) -> None:
    """A bulk store (a busy timeout of minutes) waiting for another process's writer (or for
    its turn): close() stops the wait and returns, the write waiting fails as on a closed
    store."""
    store = SQLiteStore(str(db), durability=Durability.ACK, busy_timeout=600, purge_interval=None)
    with writer_lock_held(db, suffix):
        write = asyncio.ensure_future(store.set("k", b"v"))
        await asyncio.sleep(0)  # queued
        await asyncio.wait_for(store.close(), 60)
        with pytest.raises(StoreUnavailable):
            await write
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM kv").fetchone() == (0,)


def _turn_is_free(db: Path) -> bool:
    fd = os.open(str(db) + WRITER_TURN_SUFFIX, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops a lock taken here
    return True


async def _until_waiting_its_turn(db: Path) -> None:
    """Until the store's writer thread holds the turn file (it waits for the writer lock)."""
    for _ in range(500):
        if not _turn_is_free(db):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the writer never took its turn to wait for the lock")


async def test_a_writer_waiting_for_the_lock_holds_the_turn(db: Path) -> None:
    """While another process's writer holds the lock, a writer waiting for it holds the turn
    file, so a writer that comes later (another store, or the one that just committed)
    queues behind it; once the lock is taken, the turn is free again."""
    store = SQLiteStore(str(db), busy_timeout=60, purge_interval=None)
    try:
        await store.set("before", b"1")
        assert _turn_is_free(db)
        with writer_lock_held(db):
            write = asyncio.ensure_future(store.set("k", b"v"))
            await _until_waiting_its_turn(db)
            assert not write.done()
        await asyncio.wait_for(write, 60)
        assert _turn_is_free(db)
        assert await store.get("k") == b"v"
    finally:
        await store.close()


async def test_a_batch_takes_in_the_writes_queued_while_it_waited_for_the_lock(db: Path) -> None:
    """A writer waiting for another process's lock: the writes queued meanwhile join its batch
    once it holds the lock, one transaction for all (not the first alone, the rest after
    another wait)."""
    store = SQLiteStore(str(db), busy_timeout=60, purge_interval=None)
    try:
        await store.set("before", b"1")
        with writer_lock_held(db):
            first = asyncio.ensure_future(store.set("k0", b"v"))
            await _until_waiting_its_turn(db)  # the writer has taken k0 and waits for the lock
            commits = store.commits
            rest = [asyncio.ensure_future(store.set(f"k{i}", b"v")) for i in range(1, 20)]
            await asyncio.sleep(0.05)
            assert not first.done()
        await asyncio.wait_for(asyncio.gather(first, *rest), 60)
        assert store.commits == commits + 1
        assert await store.get_many([f"k{i}" for i in range(20)]) == [b"v"] * 20
    finally:
        await store.close()


def _open_and_close(path: str) -> None:
    store = SQLiteStore(path)
    asyncio.run(store.close())


def test_processes_opening_a_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    """Workers starting together on a new file: the WAL switch and the schema's set-up take
    turns (without it, one of them answered "database is locked")."""
    context = multiprocessing.get_context("fork")
    for round_ in range(5):
        path = str(tmp_path / f"new-{round_}.db")
        workers = [context.Process(target=_open_and_close, args=(path,)) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert [w.exitcode for w in workers] == [0, 0, 0, 0]
