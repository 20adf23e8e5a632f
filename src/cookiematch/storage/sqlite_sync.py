"""The WAL made durable after its commits, on a thread of its own (``Durability.ACK``).

    writer thread: BEGIN; …; COMMIT ──results──▶ syncer thread: fdatasync(WAL) ──▶ futures
                   BEGIN; …; COMMIT ──results──▶   (one fsync for every commit before it)

Under ``synchronous=FULL`` SQLite fsyncs the WAL inside ``COMMIT``, holding the write lock:
the writer waits for the disk before it can start the next batch, and an fsync is most of a
commit's time (docs/performance.md, "The WAL synced beside the writer"). Instead the writer's
connection runs ``synchronous=NORMAL`` (a commit writes its frames to the WAL, no fsync) and
hands its batch's results here; this thread fsyncs the WAL file and only then settles their
futures. A write is still acknowledged once it is on disk, while the writer commits the next
batch; one fsync covers every commit made before it started, so under load one covers
several.

What survives a power loss is a prefix of the commits: the WAL keeps them in order, and
recovery stops at the last whole one. Under ``NORMAL`` SQLite still syncs on its own where
the WAL's order needs it: a checkpoint fsyncs the WAL before it copies pages into the database
and the database before the WAL may restart, and a restarted WAL's header is synced. A commit
is visible to readers before this fsync: a reader may see, for about one fsync, a write that a
power loss would undo and that nobody was told is stored (a crash of the process loses
nothing: the frames are in the kernel's cache once committed).

An fsync that fails fails the writes it was for, and every later one: the kernel may have
dropped the pages it could not write, so a later fsync that succeeds would not prove that the
earlier commits are on disk, and recovery would stop at the first one missing. The store then
answers ``StoreUnavailable`` (its guard's breaker opens, its ``ping`` fails) until the process
is restarted on a sound disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading

from cookiematch.errors import StoreUnavailable
from cookiematch.storage.sqlite_batch import Result, deliver

__all__ = ["WalSyncer"]

log = logging.getLogger("cookiematch.storage.sqlite")

_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has fsync only


class WalSyncer:
    """Settles committed results once the WAL at ``wal_path`` is synced, in the order given.
    ``stop()`` once the writer has stopped: it syncs and settles what is queued first."""

    def __init__(self, wal_path: str) -> None:
        self._path = wal_path
        self._fd: int | None = None
        self._queue: queue.SimpleQueue[list[Result] | None] = queue.SimpleQueue()
        self.syncs = 0  # fsyncs of the WAL (statistics)
        self.failure: str | None = None  # why an fsync failed, once one has
        self._thread = threading.Thread(target=self._run, daemon=True, name="sqlite-s")
        self._thread.start()

    @property
    def alive(self) -> bool:
        """The thread runs and no fsync has failed."""
        return self._thread.is_alive() and self.failure is None

    def settle_synced(self, results: list[Result]) -> None:
        """Settle ``results`` (a batch committed by the writer) once the WAL is synced."""
        self._queue.put(results)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                results: list[Result] = []
                item = self._queue.get()
                while True:  # everything queued meanwhile: one fsync for all of it
                    if item is None:
                        stop = True
                    else:
                        results += item
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if results:
                    deliver(self._synced(results))
        finally:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)

    def _synced(self, results: list[Result]) -> list[Result]:
        """``results`` once the WAL is synced; its successes become errors if it cannot be,
        or could not be once."""
        if not any(ok for _, ok, _ in results):
            return results
        if self.failure is None:
            try:
                self._sync()
                return results
            except Exception as exc:  # not known to be on disk: not acknowledged as stored
                self.failure = f"{type(exc).__name__}: {exc}"
                log.error(
                    "sqlite store: cannot sync the WAL %r, no write is acknowledged from now"
                    " on (restart on a sound disk): %s", self._path, exc,
                )  # fmt: skip
        err = StoreUnavailable(
            f"sqlite: the write is committed but not known to be on disk: an fsync of the WAL"
            f" failed ({self.failure})"
        )
        return [(fut, False, err) if ok else (fut, ok, value) for fut, ok, value in results]

    def _sync(self) -> None:
        fd = self._fd
        if fd is None:  # the WAL the writer's first commit wrote to, held open from now on
            fd = self._fd = os.open(self._path, os.O_RDWR)
        elif os.fstat(fd).st_nlink == 0:  # SQLite writes on to it, and loses it at its close
            raise FileNotFoundError(f"the WAL {self._path!r} was deleted under the store")
        _fdatasync(fd)
        self.syncs += 1
