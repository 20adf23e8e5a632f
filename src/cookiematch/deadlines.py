"""Time limits for many concurrent awaits, with one timer armed at a time.

``await deadlines.run(awaitable, seconds)`` behaves like ``async with asyncio.timeout(seconds):
await awaitable``: past the limit the awaiting task is cancelled and ``TimeoutError`` raised.
``asyncio.timeout`` arms and cancels a loop timer per call; here limits that end in the order
they start (every bid of an exchange has the same ``tmax``) wait in a queue behind a single
timer, armed for the earliest one still running. A limit that ends before the last queued one
gets its own timer. One ``Deadlines`` serves one event loop at a time. Limits that finished
are dropped from the head of the queue as the next ones start, so that it holds those running
(and any finished behind one still running). Dropped only when the timer fired, limits of
1 s run 264,000 times a second one after another were all held, with their tasks, and the
timer's callback walked them at once: a 49 ms stall of the loop (0.2 ms now).

``limit = deadlines.enter(seconds)`` is ``run`` without its coroutine, for a caller that
awaits in its own frame (the store's guard): it awaits, asks ``limit.timed_out()`` on a
``CancelledError``, and calls ``limit.leave()`` in a ``finally``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from typing import TypeVar

from cookiematch.loops import running_loop

T = TypeVar("T")


class Limit:
    """One running limit: cancels its task at ``when`` unless it is ``done`` by then."""

    __slots__ = ("cancelling", "done", "expired", "own", "task", "when")

    def __init__(self, task: asyncio.Task[object], when: float) -> None:
        self.task = task
        self.when = when
        self.cancelling = task.cancelling()
        self.done = False
        self.expired = False
        self.own: asyncio.TimerHandle | None = None  # its own timer, when not queued

    def expire(self) -> None:
        if not self.done:
            self.expired = True
            self.task.cancel()

    def timed_out(self) -> bool:
        """Whether the ``CancelledError`` the awaiting task got is this limit's (then taken
        back: the caller raises its own error instead)."""
        return self.expired and self.task.uncancel() <= self.cancelling

    def leave(self) -> None:
        """The awaited call has ended, however."""
        self.done = True
        if self.own is not None:
            self.own.cancel()


class Deadlines:
    """Runs awaitables under time limits (see the module docstring)."""

    def __init__(self) -> None:
        self._queue: deque[Limit] = deque()  # ``when`` never decreases along the queue
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    async def run(self, awaitable: Awaitable[T], seconds: float) -> T:
        """``await awaitable``; TimeoutError (its task cancelled) once ``seconds`` have passed."""
        limit = self.enter(seconds)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if limit.timed_out():
                raise TimeoutError from None
            raise
        finally:
            limit.leave()

    def enter(self, seconds: float) -> Limit:
        """A limit of ``seconds`` on the running task, from now (see the module docstring)."""
        loop = running_loop(self._loop)
        if loop is not self._loop:
            self._restart(loop)
        task = asyncio.current_task(loop)  # (the loop given: not looked up again)
        if task is None:
            raise RuntimeError("a deadline needs a running task")
        limit = Limit(task, loop.time() + seconds)
        queue = self._queue
        while queue and queue[0].done:
            queue.popleft()  # finished: forgotten now, not when the timer fires
        if queue and limit.when < queue[-1].when:
            limit.own = loop.call_at(limit.when, limit.expire)
        else:
            queue.append(limit)
            if self._timer is None:
                self._arm(loop, limit.when)
            elif limit.when < self._timer_at:  # the limits it was armed for were dropped
                self._timer.cancel()
                self._arm(loop, limit.when)
        return limit

    def __len__(self) -> int:
        """The limits held: those running, and those finished behind one still running."""
        return len(self._queue)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._timer = loop.call_at(when, self._fire, loop)
        self._timer_at = when

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Expire every limit due by now (at least the one the timer was armed for), drop the
        finished ones, re-arm for the next one still running."""
        self._timer = None
        due = max(loop.time(), self._timer_at)
        queue = self._queue
        while queue:
            head = queue[0]
            if head.when > due and not head.done:
                self._arm(loop, head.when)
                return
            queue.popleft().expire()

    def _restart(self, loop: asyncio.AbstractEventLoop) -> None:
        """Forget the limits of a previous event loop (tests run one loop after another)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._queue.clear()
        self._loop = loop
