"""The event loop's SQLite reads share one read transaction per turn of the loop, and still see
every write acknowledged before the code reading it ran (storage/sqlite_turn.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from cookiematch.storage.sqlite import SQLiteStore
from cookiematch.storage.sqlite_turn import TurnReads


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "turn.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t VALUES ('a', 'old')")
    return path


def value(conn: sqlite3.Connection) -> str:
    return str(conn.execute("SELECT v FROM t WHERE k = 'a'").fetchone()[0])


def update(path: Path, new: str) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("UPDATE t SET v = ? WHERE k = 'a'", (new,))


async def test_one_transaction_per_turn_ended_by_the_next(db: Path) -> None:
    """Reads of one turn see one snapshot; the next turn's see a write committed meanwhile,
    and no transaction stays open between turns (a checkpoint is never held back)."""
    reads = TurnReads(sqlite3.connect(db, isolation_level=None, check_same_thread=False))
    try:
        conn = reads.connection()
        assert conn.in_transaction
        assert value(conn) == "old"
        update(db, "new")  # committed by another connection within this turn
        assert value(reads.connection()) == "old"  # the same snapshot
        await asyncio.sleep(0)
        assert not conn.in_transaction
        assert value(reads.connection()) == "new"
    finally:
        reads.close()


def test_outside_an_event_loop_each_read_is_its_own_transaction(db: Path) -> None:
    reads = TurnReads(sqlite3.connect(db, isolation_level=None))
    try:
        conn = reads.connection()
        assert not conn.in_transaction
        assert value(conn) == "old"
        update(db, "new")
        assert value(reads.connection()) == "new"
    finally:
        reads.close()


async def test_closing_with_a_transaction_open_ends_it_quietly(db: Path) -> None:
    reads = TurnReads(sqlite3.connect(db, isolation_level=None, check_same_thread=False))
    assert value(reads.connection()) == "old"
    reads.close()
    await asyncio.sleep(0)  # the scheduled end finds the connection closed: nothing to do
    with closing(sqlite3.connect(db)) as conn:
        assert value(conn) == "old"


async def test_get_now_sees_what_another_store_acknowledged_after_an_earlier_read(
    tmp_path: Path,
) -> None:
    """Another process's write acknowledged after this loop's read of the same key: the
    read after the acknowledgement sees it, though the first read's turn had a snapshot."""
    path = str(tmp_path / "store.db")
    here, there = SQLiteStore(path), SQLiteStore(path)
    try:
        await here.set("k", b"v1")
        assert here.get_now("k") == b"v1"  # this turn's snapshot
        await there.set("k", b"v2")  # acknowledged: committed first
        assert here.get_now("k") == b"v2"

        seen: list[bytes | None] = []

        async def write_then_read() -> None:
            await there.set("k", b"v3")
            seen.append(here.get_now("k"))

        task = asyncio.ensure_future(write_then_read())
        assert here.get_now("k") == b"v2"  # a snapshot opened before the write
        await task
        assert seen == [b"v3"]
    finally:
        await here.close()
        await there.close()


def test_a_transaction_whose_loop_stopped_first_ends_at_the_next_read(db: Path) -> None:
    """A loop that stops before its turn's end runs (tests run one loop after another): the
    next read, on another loop, ends that transaction and sees what was committed since."""
    reads = TurnReads(sqlite3.connect(db, isolation_level=None, check_same_thread=False))
    seen: list[str] = []

    def read_and_stop(loop: asyncio.AbstractEventLoop) -> None:
        seen.append(value(reads.connection()))
        loop.stop()  # before the end scheduled by that read runs

    async def read() -> str:
        return value(reads.connection())

    try:
        first = asyncio.new_event_loop()
        try:
            first.call_soon(read_and_stop, first)
            first.run_forever()
        finally:
            first.close()
        assert seen == ["old"]
        update(db, "new")
        second = asyncio.new_event_loop()
        try:
            assert second.run_until_complete(read()) == "new"
        finally:
            second.close()
    finally:
        reads.close()
