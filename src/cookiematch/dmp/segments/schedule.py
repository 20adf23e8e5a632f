"""Scheduled full recomputes: ``interval`` seconds after the last one, in one worker at a time
(a ``Schedule`` of ``dmp/schedule.py``). Due counts from the last recompute's report, so a
recompute run by the CLI counts, and a restart does not recompute at once after a recent one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from cookiematch.clock import Clock
from cookiematch.dmp.keys import RECOMPUTE_LEASE_KEY, RECOMPUTE_RUN_KEY
from cookiematch.dmp.schedule import LEASE_SECONDS, TICK_SECONDS, Counts, Job, Schedule
from cookiematch.dmp.segments.service import SegmentService
from cookiematch.dmp.segments.updater import RecomputeReport
from cookiematch.storage.base import Store

__all__ = ["RECOMPUTE_JOB", "RecomputeSchedule", "recompute_job"]

RECOMPUTE_JOB = "recompute"


def recompute_job(
    segments: SegmentService,
    interval: float,
    *,
    run: Callable[[], Awaitable[RecomputeReport]] | None = None,
) -> Job:
    """Every segment recomputed, every ``interval`` seconds: by ``run`` (the analytics
    engine's recompute, ``roots/dmp.py``), else per profile by ``segments``."""

    async def work() -> Counts:
        report = await (run or segments.recompute)()
        return {"profiles": report.profiles, "joined": report.joined, "left": report.left,
                "seconds": report.seconds}  # fmt: skip

    async def last_started() -> float | None:
        report = await segments.last_recompute()
        return None if report is None else report.at

    return Job(
        name=RECOMPUTE_JOB, title="segment recompute", event="segments.recompute",
        interval=interval, work=work, lease_key=RECOMPUTE_LEASE_KEY,
        record_key=RECOMPUTE_RUN_KEY, last_started=last_started,
    )  # fmt: skip


class RecomputeSchedule(Schedule):
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
        if not interval > 0:
            raise ValueError("interval and tick must be positive")
        super().__init__(
            recompute_job(segments, interval), store, holder=holder, clock=clock, tick=tick,
            lease_ttl=lease_ttl,
        )  # fmt: skip
