"""The SQLite store's threads: one writer with group commit, reader threads, fed by queues.

    event loop ──(op, future)──▶ write queue ──▶ writer thread: BEGIN; op; op; …; COMMIT
               ◀── one call_soon_threadsafe per batch ── syncer thread: fsync of the WAL ◀┘
    event loop ──(op, future)──▶ read queue ──▶ reader threads, one connection each

No SQLite call runs on the event loop. The writer drains everything queued and applies it in
one transaction (with what was queued while it waited for other processes' writers). Under
``Durability.ACK`` the syncer thread (``sqlite_sync``) fsyncs the WAL after the commit while
the writer goes on to the next batch, and settles the batch's futures once it is on disk: one
fsync covers one batch or more, and a write's future resolves only once it is committed and
synced.
If a batch fails, it is rolled back and its ops are retried one transaction each, so a bad op
fails alone. Under ``Durability.ASYNC`` (``synchronous=NORMAL``) the writes queued with
``apply`` (the store's ``set``, ``hset``, ``hset_many``, ``write_many``) return once queued
while fewer than ``max_pending`` writes wait; beyond that they wait for their commit
(backpressure). Reads then wait until the writes queued before them are committed, so a
coroutine reads its own writes. WAL readers never block the writer.

Expired values and fields are purged by the writer every ``purge_interval`` seconds, a bounded
chunk (``sqlite_ops.PURGE_CHUNK``) at a time.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from cookiematch.clock import Clock
from cookiematch.errors import StoreUnavailable
from cookiematch.loops import running_loop
from cookiematch.storage import sqlite_ops as ops
from cookiematch.storage.sqlite_batch import (
    Item,
    Op,
    Outcome,
    Queued,
    Result,
    deliver,
    drain,
    plain_rows,
    run_reads,
    run_writes,
    top_up,
    wrap,
)
from cookiematch.storage.sqlite_sync import WalSyncer

log = logging.getLogger("cookiematch.storage.sqlite")

T = TypeVar("T")

LOCK_FIRST_PAUSE = 0.0001  # seconds between the first tries for the writer lock
LOCK_LAST_PAUSE = 0.0005  # ... doubling up to this (bench/writer_lock_bench.py)


class Engine:
    """Runs ops on the writer connection (group commit) and the reader connections; owns and
    closes them. Submit from the event loop; ``close()`` once."""

    def __init__(
        self,
        writer: sqlite3.Connection,
        readers: Sequence[sqlite3.Connection],
        *,
        asynchronous: bool,
        clock: Clock,
        max_pending: int,
        purge_interval: float | None,
        writer_lock: int | None = None,
        writer_turn: int | None = None,
        busy_timeout: float = 10.0,
        wal_path: str | None = None,
    ) -> None:
        self._wconn = writer
        self._writer_lock = writer_lock
        self._writer_turn = writer_turn
        self._busy_timeout = busy_timeout
        self._async = asynchronous
        self._clock = clock
        self._max_pending = max_pending
        self._purge_interval = purge_interval
        self._next_purge = time.monotonic() + (purge_interval or 0.0)
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one the ops' futures are of
        self._seqs = itertools.count(1)
        self._last_seq = 0  # last write submitted
        self._committed = 0  # last write committed (or failed)
        self._writer_done = False
        self._cond = threading.Condition()
        self._submit_lock = threading.Lock()
        self._wq: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._rq: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.commits = 0  # transactions committed by the writer (statistics)
        self.writes = 0  # write ops those transactions carried
        self.lost = 0  # queued writes nobody waited for that failed
        # ``wal_path``: the writer commits without an fsync, this thread's fsync acknowledges
        self._syncer = WalSyncer(wal_path) if wal_path is not None else None
        self._acknowledge = deliver if self._syncer is None else self._syncer.settle_synced
        self._threads = [threading.Thread(target=self._write_loop, daemon=True, name="sqlite-w")]
        self._threads += [
            threading.Thread(target=self._read_loop, args=(c,), daemon=True, name=f"sqlite-r{i}")
            for i, c in enumerate(readers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def backlog(self) -> int:
        """Writes queued, not yet taken by the writer thread (awaited ones included)."""
        return self._wq.qsize()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def writer_alive(self) -> bool:
        """The writer thread runs, and so does its syncer (``ack``), every fsync so far a
        success."""
        return self._threads[0].is_alive() and (self._syncer is None or self._syncer.alive)

    @property
    def syncs(self) -> int:
        """The WAL's fsyncs by the syncer (``wal_path``), each for one or more commits."""
        return 0 if self._syncer is None else self._syncer.syncs

    # --- submitting ops (event loop thread) ------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("sqlite store is closed")

    def read(self, op: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue a read; in ASYNC mode it runs once the writes queued before it committed."""
        self._check_open()
        loop = self._loop = running_loop(self._loop)
        fut: asyncio.Future[T] = loop.create_future()
        self._rq.put((op, args, fut, self._last_seq if self._async else 0))
        return fut

    def _queue_write(self, op: Op, args: tuple[Any, ...], fut: asyncio.Future[Any] | None) -> None:
        if self._closed:
            raise StoreUnavailable("sqlite store is closed")
        with self._submit_lock:  # sequence numbers enter the queue in order
            seq = self._last_seq = next(self._seqs)
            self._wq.put((op, args, fut, seq))

    def write(self, op: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue a write; its future resolves once committed."""
        loop = self._loop = running_loop(self._loop)
        fut: asyncio.Future[T] = loop.create_future()
        self._queue_write(op, args, fut)
        return fut

    def apply(self, op: Op, *args: Any) -> asyncio.Future[None] | None:
        """Queue a write; the future of its commit to await, or None when nobody need wait
        (ASYNC with fewer than max_pending queued). A plain function, not a coroutine: the
        caller awaits the future itself, one coroutine level fewer per write."""
        if self._async and self._wq.qsize() < self._max_pending:
            self._queue_write(op, args, None)
            return None
        return self.write(op, *args)

    async def close(self) -> None:
        """Commit what is queued, stop the threads and close the connections (a batch still
        waiting for another process's writer fails at once: ``_lock_writer``)."""
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.get_running_loop().run_in_executor(None, self._shutdown)
        await asyncio.shield(self._closing)

    def _shutdown(self) -> None:
        self._wq.put(None)
        self._threads[0].join()
        if self._syncer is not None:  # what the writer committed last, synced and settled
            self._syncer.stop()
        for _ in self._threads[1:]:
            self._rq.put(None)
        for thread in self._threads[1:]:
            thread.join()

    # --- writer thread ---------------------------------------------------------------------

    def _write_loop(self) -> None:
        try:
            while True:
                timeout = None
                if self._purge_interval:
                    timeout = max(0.0, self._next_purge - time.monotonic())
                try:
                    first = self._wq.get(timeout=timeout)
                except queue.Empty:
                    pass
                else:
                    batch, stop = drain(self._wq, first)
                    if batch:
                        waiting, stop = self._write_batch(batch, stop)
                        if waiting:  # once the writer lock is released (and the WAL synced)
                            self._acknowledge(waiting)
                    if stop:
                        break
                if self._purge_interval and time.monotonic() >= self._next_purge:
                    if self._lock_writer():
                        try:
                            self._purge_chunk()
                        finally:
                            self._unlock_writer()
                    else:  # another process's writer is busy: purge later
                        self._next_purge = time.monotonic() + self._purge_interval
        finally:
            self._closed = True  # also if this thread died: fail fast rather than hang
            with self._cond:
                self._writer_done = True
                self._cond.notify_all()
            self._fail_leftovers(self._wq)
            self._wconn.close()

    def _lock_writer(self) -> bool:
        """The writers of every process on this file, one at a time and in turn: ``flock`` on
        the turn file, then on the writer lock file, the turn released once the writer lock is
        held. A writer that has just committed thus queues behind one already waiting rather
        than taking the lock again ahead of it. Each is tried without blocking every 0.1 ms,
        backing off to every 0.5 ms, where SQLite's busy handler sleeps 1, 2, 5 ... 100 ms
        between its tries (beyond a request's store deadline with two workers writing). False
        after the busy timeout, or at once once the store is closing: the caller fails its
        batch as a busy SQLite would."""
        fd = self._writer_lock
        if fd is None:
            return True
        deadline = time.monotonic() + self._busy_timeout
        turn = self._writer_turn
        if turn is None:
            return self._take(fd, deadline)
        if not self._take(turn, deadline):
            return False
        try:
            return self._take(fd, deadline)
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)

    def _take(self, fd: int, deadline: float) -> bool:
        """``flock(fd)``, tried as ``_lock_writer`` says; False past ``deadline`` or once
        closing."""
        pause = LOCK_FIRST_PAUSE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if self._closed or time.monotonic() >= deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, LOCK_LAST_PAUSE)
            else:
                return True

    def _unlock_writer(self) -> None:
        if self._writer_lock is not None:
            fcntl.flock(self._writer_lock, fcntl.LOCK_UN)

    def _write_batch(self, batch: list[Queued], stop: bool) -> tuple[list[Result], bool]:
        """Commit ``batch`` holding the writer lock; the results its waiters are to be given
        (after the lock is released), and whether the stop marker was met (``stop``, or while
        the batch took in what was queued as the lock was awaited)."""
        if not self._lock_writer():
            busy: Outcome = (False, self._busy_error())
            return self._settled(batch, [busy] * len(batch)), stop
        try:
            if self._writer_lock is not None and not stop:
                stop = top_up(self._wq, batch)
            results = self._commit_batch(batch)
        finally:
            self._unlock_writer()
        return self._settled(batch, results), stop

    def _busy_error(self) -> Exception:
        if self._closed:
            return StoreUnavailable("sqlite store is closed")
        return wrap(
            sqlite3.OperationalError(
                f"database is locked (another process's writer held the writer lock for "
                f"{self._busy_timeout:g} s)"
            )
        )

    def _commit_batch(self, batch: list[Queued]) -> list[Outcome]:
        conn = self._wconn
        try:
            rows = plain_rows(batch)
            if rows is not None:  # one statement is its own transaction: one step, one commit
                ops.put_many(conn, rows)
                results: list[Outcome] = [(True, None)] * len(batch)
            else:
                conn.execute("BEGIN IMMEDIATE")
                results = run_writes(conn, batch)
                conn.execute("COMMIT")
            self.commits += 1
        except Exception:
            self._rollback()
            results = [self._commit_one(op, args) for op, args, _, _ in batch]
        return results

    def _settled(self, batch: list[Queued], results: list[Outcome]) -> list[Result]:
        """Mark ``batch`` done (readers waiting for it go on); the results that have waiters."""
        self.writes += len(batch)
        with self._cond:
            self._committed = max(self._committed, batch[-1][3])
            self._cond.notify_all()
        waiting: list[Result] = []
        for (_, _, fut, _), (ok, value) in zip(batch, results, strict=True):
            if fut is not None:
                waiting.append((fut, ok, value))
            elif not ok:
                self.lost += 1
                log.error("sqlite store: a queued write failed: %s", value)
        return waiting

    def _commit_one(self, op: Op, args: tuple[Any, ...]) -> Outcome:
        conn = self._wconn
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = op(conn, *args)
            conn.execute("COMMIT")
            self.commits += 1
            return True, result
        except Exception as exc:
            self._rollback()
            return False, wrap(exc)

    def _rollback(self) -> None:
        try:
            if self._wconn.in_transaction:
                self._wconn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("sqlite store: rollback failed")

    def _purge_chunk(self) -> None:
        ok, result = self._commit_one(ops.purge_some, (self._clock(), ops.PURGE_CHUNK))
        if not ok:
            log.error("sqlite store: purge failed: %s", result)
        more = ok and result[1]
        self._next_purge = time.monotonic() + (0.0 if more else self._purge_interval or 0.0)

    # --- reader threads --------------------------------------------------------------------

    def _read_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                batch, stop = drain(self._rq, self._rq.get())
                if batch:
                    self._wait_committed(max(item[3] for item in batch))
                    deliver(run_reads(conn, batch))
                if stop:
                    break
        finally:
            conn.close()

    def _wait_committed(self, seq: int) -> None:
        """Block until the writes submitted up to ``seq`` are committed (ASYNC mode)."""
        if seq > self._committed:
            with self._cond:
                self._cond.wait_for(lambda: self._committed >= seq or self._writer_done)

    def _fail_leftovers(self, q: queue.SimpleQueue[Item]) -> None:
        closed = StoreUnavailable("sqlite store is closed")
        leftovers: list[Result] = []
        while True:
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if item is not None and item[2] is not None:
                leftovers.append((item[2], False, closed))
        if leftovers:
            deliver(leftovers)
