"""The event loop's SQLite point reads of one turn are read together, in one statement, and
still see every write acknowledged before the code asking for them ran
(storage/sqlite_turn.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from cookiematch.errors import StoreUnavailable
from cookiematch.storage.base import Write
from cookiematch.storage.sqlite import SQLiteStore
from cookiematch.storage.sqlite_turn import TurnReads


@pytest.fixture
def store_path(tmp_path: Path) -> str:
    return str(tmp_path / "store.db")


class CountingConnection(sqlite3.Connection):
    """A connection that counts the statements it runs."""

    statements = 0

    def execute(self, *args: object) -> sqlite3.Cursor:  # type: ignore[override]
        self.statements += 1
        return super().execute(*args)  # type: ignore[arg-type]


def counting(path: str) -> CountingConnection:
    conn = sqlite3.connect(path, isolation_level=None, factory=CountingConnection)
    assert isinstance(conn, CountingConnection)
    return conn


async def test_the_reads_of_a_turn_are_one_statement(store_path: str) -> None:
    """Reads asked in one turn are answered together by one statement, each its own value
    (an absent key None, a key asked twice twice); the next turn's reads are another."""
    store = SQLiteStore(store_path)
    try:
        await store.write_many([*(Write(f"k{i}", f"v{i}".encode()) for i in range(40))])
        conn = counting(store_path)
        reads = TurnReads(conn, time.time)
        keys = [f"k{i}" for i in range(40)] + ["absent", "k3"]
        futures = [reads.get(key) for key in keys]
        assert not any(future.done() for future in futures)  # read once the turn's calls ran
        values = await asyncio.gather(*futures)
        assert values == [f"v{i}".encode() for i in range(40)] + [None, b"v3"]
        assert conn.statements == 1
        assert await asyncio.gather(reads.get("k1"), reads.get("k2")) == [b"v1", b"v2"]
        assert conn.statements == 2
        reads.close()
    finally:
        await store.close()


async def test_a_read_sees_what_another_store_acknowledged_before_it_was_asked(
    store_path: str,
) -> None:
    """Another process's write acknowledged before a read is asked: the read sees it, even
    when asked in the turn the acknowledgement arrived in."""
    here, there = SQLiteStore(store_path), SQLiteStore(store_path)
    try:
        await here.set("k", b"v1")
        assert await here.get_batched("k") == b"v1"
        await there.set("k", b"v2")  # acknowledged: committed first
        assert await here.get_batched("k") == b"v2"

        async def write_then_read() -> bytes | None:
            await there.set("k", b"v3")
            return await here.get_batched("k")

        assert await asyncio.gather(here.get_batched("k"), write_then_read()) == [b"v2", b"v3"]
    finally:
        await here.close()
        await there.close()


async def test_a_cancelled_read_leaves_the_others_answered(store_path: str) -> None:
    store = SQLiteStore(store_path)
    try:
        await store.set("k", b"v")
        reads = TurnReads(sqlite3.connect(store_path, isolation_level=None), time.time)
        cancelled, kept = reads.get("k"), reads.get("k")
        cancelled.cancel()
        assert await kept == b"v"
        reads.close()
    finally:
        await store.close()


async def test_closing_fails_the_reads_still_waiting(store_path: str) -> None:
    store = SQLiteStore(store_path)
    try:
        reads = TurnReads(sqlite3.connect(store_path, isolation_level=None), time.time)
        waiting = reads.get("k")
        reads.close()
        with pytest.raises(StoreUnavailable):
            await waiting
        await asyncio.sleep(0)  # the turn's read finds nothing to read
    finally:
        await store.close()


def test_reads_whose_loop_stopped_first_are_dropped_at_the_next_read(store_path: str) -> None:
    """A loop that stops before its turn's reads run (tests run one loop after another): the
    next read, on another loop, drops them and is answered on its own loop."""
    first = asyncio.new_event_loop()
    store = first.run_until_complete(_opened(store_path))
    reads = TurnReads(sqlite3.connect(store_path, isolation_level=None), time.time)
    try:
        asked: list[asyncio.Future[bytes | None]] = []

        def ask_and_stop() -> None:
            asked.append(reads.get("k"))
            first.stop()  # before the read scheduled by that call runs

        first.call_soon(ask_and_stop)
        first.run_forever()
        assert len(asked) == 1 and not asked[0].done()
        second = asyncio.new_event_loop()
        try:
            assert second.run_until_complete(_read(reads, "k")) == b"v"
        finally:
            second.close()
        assert not asked[0].done()  # dropped: nobody awaits it on the stopped loop
    finally:
        reads.close()
        first.run_until_complete(store.close())
        first.close()


async def _opened(path: str) -> SQLiteStore:
    store = SQLiteStore(path)
    await store.set("k", b"v")
    return store


async def _read(reads: TurnReads, key: str) -> bytes | None:
    return await reads.get(key)


def test_outside_a_running_loop_there_is_no_read(store_path: str) -> None:
    reads = TurnReads(sqlite3.connect(store_path, isolation_level=None), lambda: 0.0)
    try:
        with pytest.raises(RuntimeError):
            reads.get("k")
    finally:
        reads.close()
