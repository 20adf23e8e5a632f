"""The Redis backends' flusher: every operation goes through one pipeline per flush.

    caller ──Op(commands, finish, future?)──▶ queue ──▶ flusher task: Wire.execute(commands)
           ◀──────── future settled with finish(results) ─────────┘   one round trip per node

The commands travel as raw RESP with replies parsed by hiredis, redis-py's pipeline being the
fallback (``redis_wire``).

Ops are sent in submission order on one connection per node, so a read sees the writes queued
before it (read-your-writes without waiting for acknowledgements). When Redis cannot be
reached (connection refused or lost, timeout, cluster down, failover in progress), reads fail
at once with StoreUnavailable while writes are put back at the head of the queue and retried
with backoff until their ``retry_for`` window closes; then an awaited write raises
StoreUnavailable and an unawaited one is counted in ``lost``. Nothing waits forever.

An awaited op whose caller stopped waiting (its future cancelled, e.g. by a request's deadline,
``storage.guard``) is settled by no one and, if it fails, not retried; but it may already have
been sent, so a cancelled write may still land. The outage is logged once when it starts
(WARNING) and once when it ends (INFO, with the writes lost meanwhile), not per flush; so is
an unforeseen failure of a flush (its traceback once per run of them, then counted).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis import exceptions as rx

from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.retry import Backoff
from cookiematch.storage.redis_scripts import Command
from cookiematch.storage.redis_wire import TRANSIENT, Wire, any_of

__all__ = ["TRANSIENT", "Command", "Finish", "Flusher", "Op", "reply_error"]

log = logging.getLogger("cookiematch.storage.redis")

Finish = Callable[[list[Any]], Any]

BACKOFF = Backoff(first=0.05, cap=0.5)
"""The wait after each failed flush in a row: 50 ms doubling to 500 ms (no jitter: one flusher
per store, retrying what is queued)."""


@dataclass(slots=True)
class Op:
    """Commands sent together; ``finish`` turns their replies into the result."""

    commands: Sequence[Command]
    finish: Finish
    future: asyncio.Future[Any] | None
    write: bool
    deadline: float = 0.0  # monotonic time after which a failing write is given up
    attempts: int = field(default=0)


class Flusher:
    """Coalesces ops into pipelines on one background task (started on first use)."""

    def __init__(
        self,
        wire: Wire,
        *,
        name: str,
        max_batch: int = 5000,
        retry_for: float = 5.0,
        backoff: Backoff = BACKOFF,
    ) -> None:
        self.wire = wire
        self._name = name
        self._max_batch = max_batch
        self.retry_for = retry_for
        self._backoff = backoff
        self._queue: collections.deque[Op] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.unawaited = 0  # queued writes nobody waits for (the bounded buffer)
        self.lost = 0  # unawaited writes given up (Redis away too long) or refused by Redis
        self.flushes = 0  # pipelines executed (statistics)
        self.commands = 0  # commands those pipelines carried
        self.unexpected = 0  # flushes that raised something unforeseen (a bug)
        self._unexpected_run = False  # the last flush was one of them
        self._down_since: float | None = None  # monotonic time of the first failed flush
        self._lost_before = 0  # ``lost`` when the outage began

    def submit(self, op: Op) -> None:
        if self._stopping:
            raise StoreUnavailable(f"{self._name} store is closed")
        if op.write:
            op.deadline = time.monotonic() + self.retry_for
            if op.future is None:
                self.unawaited += 1
        self._queue.append(op)
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)
        assert self._wake is not None
        self._wake.set()

    async def stop(self) -> None:
        """Flush what is queued (writes retried within their window), then stop the task."""
        self._stopping = True
        if self._task is not None:
            assert self._wake is not None
            self._wake.set()
            await asyncio.shield(self._task)
        await self.wire.close()

    # --- the task ---------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        failures = 0  # flushes in a row that could not reach Redis
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._take()
            try:
                healthy = await self._flush(batch)
            except Exception as exc:  # a bug must not kill the flusher nor strand callers
                self.unexpected += 1  # its traceback logged once per run of them
                if not self._unexpected_run:
                    log.exception("%s: flush failed unexpectedly", self._name)
                self._unexpected_run = True
                self._fail(batch, StorageError(f"{self._name}: {exc!r}"))
                healthy = True
            else:
                self._unexpected_run = False
            if healthy:
                failures = 0
                self._note_reachable()
            else:
                failures += 1
                await asyncio.sleep(self._backoff.delay(failures))

    def _take(self) -> list[Op]:
        batch: list[Op] = []
        count = 0
        while self._queue and (not batch or count < self._max_batch):
            op = self._queue.popleft()
            batch.append(op)
            count += len(op.commands)
        return batch

    async def _flush(self, batch: list[Op]) -> bool:
        """Send one pipeline; settle or requeue each op; False if Redis was unreachable."""
        commands = [command for op in batch for command in op.commands]
        failure: BaseException | None = None
        replies: list[Any] = []
        try:
            replies = await self.wire.execute(commands)
        except TRANSIENT as exc:
            failure = exc
            self._note_unreachable(exc)
        except rx.RedisError as exc:
            self._fail(batch, _wrap(self._name, exc))
            return True
        self.flushes += 1
        self.commands += len(replies)
        retry: list[Op] = []
        position = 0
        erred = failure is not None or any_of(replies, TRANSIENT)
        for op in batch:
            mine = replies[position : position + len(op.commands)]
            position += len(op.commands)
            transient = erred and (
                failure or next((r for r in mine if isinstance(r, TRANSIENT)), None)
            )
            if transient:
                if op.future is not None and op.future.cancelled():
                    continue  # its caller is gone: not retried (it may have landed)
                if op.write and time.monotonic() < op.deadline:
                    op.attempts += 1
                    retry.append(op)
                else:
                    self._give_up(op, transient)
                continue
            try:
                result = op.finish(mine)
            except StorageError as exc:
                self._settle(op, exc=exc)
            else:
                self._settle(op, result=result)
        if retry:
            self._queue.extendleft(reversed(retry))
        return failure is None and not retry

    # --- the outage, logged once each way ------------------------------------------------

    def _note_unreachable(self, cause: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._lost_before = self.lost
            log.warning(
                "%s: unreachable, queued writes retried for %.1f s each: %s",
                self._name, self.retry_for, str(cause) or type(cause).__name__,
            )  # fmt: skip

    def _note_reachable(self) -> None:
        if self._down_since is not None:
            log.info(
                "%s: reachable again after %.1f s; %d queued writes lost meanwhile",
                self._name, time.monotonic() - self._down_since, self.lost - self._lost_before,
            )  # fmt: skip
            self._down_since = None

    # --- settling ---------------------------------------------------------------------------

    def _settle(self, op: Op, *, result: Any = None, exc: StorageError | None = None) -> None:
        if op.future is None:
            if op.write:
                self.unawaited -= 1
            if exc is not None:
                self.lost += 1
                log.error("%s: a queued write failed: %s", self._name, exc)
        elif not op.future.done():  # a cancelled caller has gone away
            if exc is None:
                op.future.set_result(result)
            else:
                op.future.set_exception(exc)

    def _give_up(self, op: Op, cause: BaseException) -> None:
        if op.write and op.future is None:
            self.unawaited -= 1
            self.lost += 1  # logged with the outage's end (``_note_reachable``), not each
            return
        what = "write not acknowledged" if op.write else "read failed"
        err = StoreUnavailable(f"{self._name} unreachable ({what}): {cause}")
        err.__cause__ = cause
        self._settle(op, exc=err)

    def _fail(self, batch: list[Op], exc: StorageError) -> None:
        for op in batch:
            self._settle(op, exc=exc)


def _wrap(name: str, exc: BaseException) -> StorageError:
    err = StorageError(f"{name}: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def reply_error(name: str, reply: object, *, wrongtype_ok: bool = False) -> bool:
    """Raise StorageError for an error reply; True if it was a tolerated WRONGTYPE."""
    if isinstance(reply, BaseException):
        if wrongtype_ok and isinstance(reply, rx.ResponseError) and "WRONGTYPE" in str(reply):
            return True
        raise _wrap(name, reply)
    return False
