"""What is particular to the SQLite backend: URLs, opening, group commit, purge, errors."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.storage import Durability, open_store
from cookiematch.storage.sqlite import SQLiteStore, path_from_url, prefix_upper_bound

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


# --- group commit, backpressure, purge --------------------------------------------------------


async def test_concurrent_writes_share_commits(db: Path) -> None:
    store = SQLiteStore(str(db))
    await asyncio.gather(*(store.set(f"k{i}", b"v") for i in range(1000)))
    assert store.writes == 1000
    assert store.commits <= 100  # one fsync covers a whole batch
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
    assert await store.purge_expired() == 2
    assert rows(db, "SELECT key FROM kv") == [("b",)]
    assert rows(db, "SELECT field FROM fm") == [("y",)]
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


async def test_async_write_failure_is_logged(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SQLiteStore(str(db), durability=Durability.ASYNC)
    with caplog.at_level(logging.ERROR):
        await store.set("bad\ud800", b"v")  # returns once queued
        await store.close()
    assert "queued write failed" in caplog.text
