"""Frequency-capping checks applied in a child process of the worker (``ChecksProcess``).

A served exchange worker hands each batch of its checks (``FrequencyChecks.take``: plain
dicts of bytes and ints) over a pipe to a child process, which keeps the recent window, makes
the store calls and judges what they answer (``FrequencyChecks.apply_batch``), then answers
what the batch found. The worker's event loop and GIL carry none of the checks' Python: with
a different browser per request that work, done on the worker's loop, doubled the cookie
match's p99 on Redis (docs/performance.md, "The distinct-browser tail"). On SQLite the child
is one more process writing to the file, taking turns at its lock as the workers do; measured,
it frees the worker more than the turns cost (the distinct-browser p99 about 6 → under 5 ms,
`google_hm` unchanged: docs/performance.md, "The checks' child on SQLite too").

A served worker starts its child, and has it open the store, before its first request
(``prepare``): a spawned interpreter's imports, done under load with the first batch, showed
as a 104 ms stall once. Elsewhere (tests, the CLI) the child starts with the first batch.
The child opens the store from its URL behind the deadline the worker's monitor uses, and
settles its garbage collector as a served worker does (``heap.py``): a batch's slices leave
thousands of young objects, which CPython's default thresholds turn into full collections. It
ignores SIGINT and SIGTERM (the worker's graceful stop hands it the last batch, then asks it
to end) and ends when the worker does (its pipe closes). If it dies or does not answer within
``ANSWER_SECONDS``, the batch's first match tags are counted unread, as when a store call
fails, and a new child is started for the next batch. These are monitoring figures, not
acknowledged writes: a batch lost with a child is at most about a second of checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.exchange.frequency_checks import Applied, Batch, FrequencyChecks
from cookiematch.exchange.model import ExchangeSettings
from cookiematch.heap import settle
from cookiematch.storage.base import Durability
from cookiematch.storage.guard import GuardedStore
from cookiematch.storage.registry import connect_store

__all__ = ["ANSWER_SECONDS", "ChecksProcess"]

log = logging.getLogger("cookiematch.exchange")

ANSWER_SECONDS = 30.0
"""How long the worker waits for a batch's answer before it replaces the child."""
STOP_SECONDS = 5.0
"""How long a child has to end once asked, before it is killed."""

_EMPTY_BATCH: Batch = ({}, {}, {}, 0, 0.0)
"""A batch of no checks: what ``prepare`` sends."""

_Answer = tuple[dict[str, int], dict[str, int], int, tuple[bool, str] | None]
"""``Applied`` over the pipe: violations, unread, checks, and the error as (whether the store
was unavailable, its message)."""


class ChecksProcess:
    """One worker's child process for its frequency-capping checks."""

    def __init__(
        self, store_url: str, durability: Durability, settings: ExchangeSettings, deadline: float
    ) -> None:
        self._child = _Child(store_url, durability, settings, deadline)
        self._process: BaseProcess | None = None
        self._pipe: Connection | None = None
        self.restarts = 0
        """Children replaced after they died or did not answer."""

    @property
    def pid(self) -> int | None:
        """The child's process ID (None before it starts)."""
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the child now rather than with the first batch (it opens the store itself; a
        store it cannot reach shows in its first answer)."""
        context = multiprocessing.get_context("spawn")  # nothing of the worker's state copied
        ours, theirs = context.Pipe()
        process = context.Process(
            target=self._child.serve, args=(theirs,), name="cookiematch-checks", daemon=True
        )
        process.start()
        theirs.close()
        self._process, self._pipe = process, ours

    async def prepare(self) -> None:
        """Start the child and have it open the store now (an empty batch): a served worker
        does this before its first request, so that a new interpreter's start-up does not
        compete with the first second of traffic. A child that fails here is replaced with
        the first batch, as always."""
        await self.apply(_EMPTY_BATCH)

    async def apply(self, batch: Batch) -> Applied:
        """What ``batch`` found, applied by the child (started with the first batch); its
        first match tags counted unread when the child could not start, died or did not
        answer (the next batch starts a new one)."""
        try:
            if self._process is None:
                self.start()
            answer = await asyncio.wait_for(
                asyncio.to_thread(self._exchange, batch), ANSWER_SECONDS
            )
        except (TimeoutError, EOFError, OSError) as exc:
            log.warning("the frequency-capping checks process failed (%s): replacing it", exc)
            await self._stop(kill=True)
            self.restarts += 1
            failed = StoreUnavailable(f"the checks process failed: {exc!r}")
            return Applied(unread=_match_tags(batch), checks=batch[3], error=failed)
        violations, unread, checks, told = answer
        found = Applied(violations=violations, unread=unread, checks=checks)
        if told is not None:
            unavailable, message = told
            found.error = StoreUnavailable(message) if unavailable else StorageError(message)
        return found

    def _exchange(self, batch: Batch) -> _Answer:
        pipe = self._pipe
        if pipe is None:
            raise EOFError("no checks process")
        pipe.send(batch)
        answer: _Answer = pipe.recv()
        return answer

    async def close(self) -> None:
        """Ask the child to end (after the batch it holds), then wait for it."""
        await self._stop(kill=False)

    async def _stop(self, *, kill: bool) -> None:
        process, pipe = self._process, self._pipe
        self._process = self._pipe = None
        if process is None or pipe is None:
            return
        if kill:
            process.kill()
        else:
            with contextlib.suppress(OSError):
                pipe.send(None)
        await asyncio.to_thread(process.join, STOP_SECONDS)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join, STOP_SECONDS)
        pipe.close()


@dataclass(frozen=True, slots=True)
class _Child:
    """What the child is started with (pickled to it), and what it runs."""

    store_url: str
    durability: Durability
    settings: ExchangeSettings
    deadline: float

    def serve(self, pipe: Connection) -> None:
        """Apply each batch the pipe brings, answer what it found; end on None or when the
        worker's end of the pipe closes."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when this ends
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        settle()  # a batch's slices allocate thousands of young objects: no full collections
        serving = self._serve_batches(pipe)
        try:
            import uvloop
        except ImportError:
            asyncio.run(serving)
        else:
            uvloop.run(serving)

    async def _serve_batches(self, pipe: Connection) -> None:
        loop = asyncio.get_running_loop()
        store: GuardedStore | None = None
        checks: FrequencyChecks | None = None
        try:
            while True:
                try:
                    batch: Batch | None = await loop.run_in_executor(None, pipe.recv)
                except EOFError:
                    return  # the worker is gone
                if batch is None:
                    return
                try:
                    if checks is None:
                        inner = await connect_store(self.store_url, durability=self.durability)
                        store = GuardedStore(
                            inner, deadline=self.deadline, name="frequency checks store"
                        )
                        checks = FrequencyChecks(store, self.settings)
                except StorageError as exc:  # the batch's error; the next batch tries again
                    answer = _unread(batch, exc)
                else:
                    answer = _answer(await checks.apply_batch(batch))
                try:
                    pipe.send(answer)
                except OSError:
                    return  # the worker is gone (killed while this batch was applied)
        finally:
            if store is not None:
                await store.close()


def _answer(applied: Applied) -> _Answer:
    error = applied.error
    told = None if error is None else (isinstance(error, StoreUnavailable), str(error))
    return applied.violations, applied.unread, applied.checks, told


def _unread(batch: Batch, error: StorageError) -> _Answer:
    return {}, _match_tags(batch), batch[3], (isinstance(error, StoreUnavailable), str(error))


def _match_tags(batch: Batch) -> dict[str, int]:
    """The batch's first match tags per buyer: the checks left unjudged when it is not
    applied (a returned push has no check of its own)."""
    return {nid: sum(1 for at in firsts.values() if at >= 0) for nid, firsts in batch[0].items()}
