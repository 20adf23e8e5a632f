"""The event loop's own SQLite reads (``SQLiteStore.get_now``): the point reads of one turn of
the loop share one read transaction.

A point read in autocommit mode starts and ends a WAL read transaction of its own: the file's
shared lock, a read mark of the WAL index, and their release, about half of what the read
costs. Here the first read of a turn of the event loop opens a transaction (``BEGIN``), and
schedules its end with ``call_soon``; the reads after it in the same turn use it.

Every read still sees whatever was acknowledged before the request reading it came in:

- a commit happens on the writer thread before it is acknowledged, and an acknowledgement
  reaches its caller through a callback scheduled after the commit;
- a request answered by another process after its commit reaches this loop through a
  callback scheduled after that commit too;
- the loop runs its callbacks first in, first out, so the end of a transaction opened
  before such a commit runs before that callback; the callback's reads open a new one.

Outside a running event loop each read is a transaction of its own, as before.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

__all__ = ["TurnReads"]

log = logging.getLogger(__name__)


class TurnReads:
    """One read connection, its transactions one turn of the event loop long."""

    __slots__ = ("_conn", "_loop")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._loop: asyncio.AbstractEventLoop | None = None  # that of the open transaction

    def connection(self) -> sqlite3.Connection:
        """The connection, inside this turn's read transaction when a loop is running."""
        conn, opened_on = self._conn, self._loop
        if opened_on is not None:
            if opened_on.is_running():
                return conn  # this turn's: its end is scheduled
            self._end()  # its loop stopped before the end ran (one loop after another)
        loop = asyncio._get_running_loop()
        if loop is not None:
            conn.execute("BEGIN")
            self._loop = loop
            loop.call_soon(self._end)
        return conn

    def _end(self) -> None:
        if self._loop is None:  # ended already, or closed
            return
        self._loop = None
        conn = self._conn
        if not conn.in_transaction:
            return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:  # a read-only transaction: nothing to lose
            log.warning("ending a read transaction failed, rolling back: %s", exc)
            conn.rollback()

    def close(self) -> None:
        """Close the connection (a transaction open ends with it)."""
        self._loop = None
        self._conn.close()
