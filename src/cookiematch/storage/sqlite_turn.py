"""The event loop's own SQLite point reads (``SQLiteStore.get_batched``): those asked during one
turn of the loop are read together, in one statement of one step, once the turn's callbacks ran.

Python's sqlite3 lets the interpreter lock go around each ``sqlite3_step`` and each reset, and
(3.11) around reading a row's column count and each column's type: a point read of one value
lets it go five times. On a served worker whose event loop is busy, granian's
threads are waiting for the lock, and each release hands it to one of them; the loop then waits
to get it back. Under load a turn of the loop carries dozens of requests (27 a turn on average
for ``/bid`` at its limit, docs/performance.md "The reads of a turn in one statement"), each
with its read: read together, their values come back as one JSON row (``sqlite_ops.get_found``),
five releases for the lot instead of five each.

Every read still sees whatever was acknowledged before the code asking for it ran: the
statement runs later than that code, in autocommit mode (a read transaction of its own), so it
sees every commit made before it starts, including those of other processes; the reads of one
statement see one snapshot.

A read asked on a loop whose turn ended without reading it (the loop stopped first: tests run
one loop after another) is dropped when the next read is asked on another loop: nobody is left
to await it.
"""

from __future__ import annotations

import asyncio
import sqlite3

from cookiematch.clock import Clock
from cookiematch.errors import StoreUnavailable
from cookiematch.loops import running_loop
from cookiematch.storage import sqlite_ops as ops
from cookiematch.storage.sqlite_batch import wrap

__all__ = ["TurnReads"]

Waiting = list[tuple[str, "asyncio.Future[bytes | None]"]]


class TurnReads:
    """One read connection; the point reads of a turn of the event loop, read together at its
    end."""

    __slots__ = ("_clock", "_conn", "_loop", "_waiting")

    def __init__(self, conn: sqlite3.Connection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None  # that of the reads waiting
        self._waiting: Waiting = []

    def get(self, key: str) -> asyncio.Future[bytes | None]:
        """The live value of ``key`` (None when absent or expired), read with the other reads
        of this turn once its callbacks ran. RuntimeError outside a running event loop."""
        loop = running_loop(self._loop)
        future: asyncio.Future[bytes | None] = loop.create_future()
        waiting = self._waiting
        if waiting and self._loop is not loop:
            waiting.clear()  # asked on a loop that stopped before reading them
        if not waiting:
            self._loop = loop
            loop.call_soon(self._read)
        waiting.append((key, future))
        return future

    def _read(self) -> None:
        waiting = self._waiting
        if not waiting:  # closed, or dropped
            return
        self._waiting = []
        try:
            found = ops.get_found(self._conn, [key for key, _ in waiting], self._clock())
        except Exception as exc:  # a StorageError for every read: none is left waiting
            for _, future in waiting:
                if not future.done():
                    future.set_exception(wrap(exc))
            return
        for key, future in waiting:
            if not future.done():  # not cancelled
                future.set_result(found.get(key))

    def close(self) -> None:
        """Close the connection; reads still waiting fail (StoreUnavailable)."""
        waiting, self._waiting = self._waiting, []
        for _, future in waiting:
            if not future.done() and not future.get_loop().is_closed():
                future.set_exception(StoreUnavailable("sqlite store is closed"))
        self._conn.close()
