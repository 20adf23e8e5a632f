"""Scheduled full recomputes: ``interval`` seconds after the last one, in one worker at a time.

Every server worker of every instance on a store runs a ``RecomputeSchedule``. Each step:

    read the last recompute's report ──▶ not due yet: look again when it is (≤ ``tick`` s)
      └─ due ──▶ claim the lease ──▶ taken: another worker is on it; look again in ``tick`` s
                   └─ ours ──▶ read the report again ──▶ still due: recompute (the lease
                               renewed meanwhile) ──▶ release the lease

Due means ``report.at + interval`` has passed (``at``: when that recompute started), so a
recompute run by the CLI counts, and a restart does not recompute at once after a recent one.
A failed step is logged and the next tick tries again; the loop ends only when cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec

from cookiematch.clock import Clock
from cookiematch.dmp.keys import RECOMPUTE_LEASE_KEY
from cookiematch.dmp.segments.service import SegmentService
from cookiematch.dmp.segments.updater import RecomputeReport
from cookiematch.errors import CookiematchError, StorageError
from cookiematch.storage.base import Store
from cookiematch.storage.lease import Lease, holder_of

log = logging.getLogger(__name__)

TICK_SECONDS = 60.0
"""Longest wait between two looks at the schedule, and the wait after a failure."""
LEASE_SECONDS = 300.0
"""The lease's TTL: a worker that dies mid-recompute holds it this long at most."""


class ScheduleState(msgspec.Struct, frozen=True):
    """The schedule as every worker sees it (all read from the store)."""

    interval_seconds: float
    next_at: float  # when a recompute is due; in the past: it is running, starting or failing
    holder: str | None  # the worker holding the lease now


class RecomputeSchedule:
    """Runs ``SegmentService.recompute`` every ``interval`` seconds, one worker at a time."""

    def __init__(
        self,
        segments: SegmentService,
        store: Store,
        *,
        interval: float,
        holder: str,
        clock: Clock = time.time,
        tick: float = TICK_SECONDS,
        lease_ttl: float = LEASE_SECONDS,
    ) -> None:
        if not (interval > 0 and tick > 0):
            raise ValueError("interval and tick must be positive")
        self._segments = segments
        self._store = store
        self.interval = interval
        self.tick = tick
        self._clock = clock
        self.lease = Lease(store, RECOMPUTE_LEASE_KEY, holder, ttl=lease_ttl, clock=clock)
        self.runs = 0  # recomputes this worker ran
        self.failures = 0  # consecutive failed steps
        self.last_error: str | None = None

    def next_at(self, report: RecomputeReport | None) -> float:
        """When the recompute after ``report`` is due (now if there was none)."""
        return self._clock() if report is None else report.at + self.interval

    def _wait(self, report: RecomputeReport | None) -> float:
        """Seconds until the next look: until due, at most a tick; 0 if due now."""
        return min(max(self.next_at(report) - self._clock(), 0.0), self.tick)

    async def step(self) -> float:
        """Recompute if due and this worker gets the lease; the seconds to wait before the next
        step. Raises what the store or the recompute raised (the lease is released)."""
        wait = self._wait(await self._segments.last_recompute())
        if wait > 0:
            return wait
        if not await self.lease.claim():
            return self.tick  # another worker holds it: running, or about to
        try:
            wait = self._wait(await self._segments.last_recompute())
            if wait > 0:
                return wait  # another worker or the CLI finished one meanwhile
            report = await self.lease.run(self._segments.recompute())
        finally:
            with contextlib.suppress(StorageError):
                await self.lease.release()
        self.runs += 1
        log.info(
            "scheduled segment recompute: profiles=%d joined=%d left=%d seconds=%.1f",
            report.profiles, report.joined, report.left, report.seconds,
            extra={"event": "segments.recompute", "profiles": report.profiles,
                   "joined": report.joined, "left": report.left, "seconds": report.seconds},
        )  # fmt: skip
        return self._wait(report)

    async def run(self) -> None:
        """Step forever, until cancelled; a failed step is logged and retried a tick later."""
        while True:
            try:
                wait = await self.step()
            except Exception as exc:
                wait = self.tick
                self._failed(exc, wait)
            else:
                if self.failures:
                    log.info("scheduled segment recompute: working again after %d failed "
                             "attempts", self.failures)  # fmt: skip
                self.failures, self.last_error = 0, None
            await asyncio.sleep(wait)

    def _failed(self, exc: Exception, wait: float) -> None:
        """One line per failure; a traceback only for the first unexpected one in a row."""
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        unexpected = not isinstance(exc, CookiematchError)
        log.warning(
            "scheduled segment recompute failed: error=%r failures=%d retry_in=%.0fs",
            self.last_error, self.failures, wait,
            exc_info=exc if unexpected and self.failures == 1 else None,
            extra={"event": "segments.recompute.failed", "error": self.last_error,
                   "failures": self.failures, "retry_in": wait},
        )  # fmt: skip

    async def state(self) -> ScheduleState:
        report, holder = await asyncio.gather(
            self._segments.last_recompute(), holder_of(self._store, RECOMPUTE_LEASE_KEY)
        )
        return ScheduleState(self.interval, self.next_at(report), holder)
