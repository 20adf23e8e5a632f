"""The scheduler (``dmp/schedule.py``) beyond the recompute's tests: runs asked for (one at a
time across holders), run records of successes and failures, a changing set of jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from cookiematch.dmp.schedule import Counts, Job, Schedule, ScheduleSet
from cookiematch.errors import Busy
from cookiematch.storage import Store

from .helpers import NOW, FakeClock


class Work:
    """A job's work that counts its runs; ``gate`` holds a run, ``fail`` makes the next fail."""

    def __init__(self) -> None:
        self.runs = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def __call__(self) -> Counts:
        self.runs += 1
        await self.gate.wait()
        if self.fail is not None:
            failure, self.fail = self.fail, None
            raise failure
        return {"items": self.runs, "seconds": 0.5}


def job(work: Work, name: str = "pull:crm", interval: float = 60.0, spec: object = 1) -> Job:
    return Job(
        name=name, title=f"job {name}", event="test.job", interval=interval, work=work,
        lease_key=f"{{t}}:{name}:lease", record_key=f"{{t}}:{name}", spec=spec,
    )  # fmt: skip


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def finished(schedule: Schedule) -> None:
    """The run's record says it finished, and the run is over (its lease released after)."""
    deadline = time.monotonic() + 10
    while (
        (record := await schedule.record()) is None
        or record.finished_at is None
        or schedule.running
    ):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)


async def test_a_triggered_run_is_one_at_a_time_across_holders_and_kept(
    store: Store, clock: FakeClock
) -> None:
    work = Work()
    here = Schedule(job(work), store, holder="w1", clock=clock)
    there = Schedule(job(work), store, holder="w2", clock=clock)
    work.gate.clear()
    await here.trigger()
    await until(lambda: work.runs == 1)
    for schedule in (here, there):
        with pytest.raises(Busy, match="held by w1"):
            await schedule.trigger()
    running = await there.state()
    assert running.holder == "w1" and running.last_run is not None
    assert running.last_run.finished_at is None and running.last_run.ok is None
    work.gate.set()
    await finished(here)
    state = await there.state()
    assert state.holder is None and state.last_run is not None
    assert (state.last_run.ok, state.last_run.counts) == (True, {"items": 1, "seconds": 0.5})
    assert state.last_run.last_ok_at == NOW and state.next_at == NOW + 60
    assert here.runs == 1 and work.runs == 1
    await there.trigger()  # free again, from the other holder
    await until(lambda: work.runs == 2)  # its record now says running
    await finished(there)
    assert there.runs == 1


async def test_a_failed_run_is_recorded_and_keeps_the_last_success(
    store: Store, clock: FakeClock
) -> None:
    work = Work()
    schedule = Schedule(job(work), store, holder="w1", clock=clock)
    assert await schedule.step() == 60  # never ran: due now
    clock.now += 120
    work.fail = RuntimeError("partner down")
    with pytest.raises(RuntimeError):
        await schedule.step()
    record = await schedule.record()
    assert record is not None and record.ok is False
    assert record.error == "RuntimeError: partner down" and record.last_ok_at == NOW
    assert (await schedule.state()).next_at == NOW + 60  # still due: retried at the next tick
    assert await schedule.step() == 60 and work.runs == 3


async def test_the_set_follows_the_jobs_of_now(store: Store) -> None:
    work = Work()
    jobs = [job(work), job(work, "export:s:d", interval=0)]
    schedules = ScheduleSet(lambda: jobs, store, holder="w1", refresh=0.01)
    runner = asyncio.create_task(schedules.run())
    try:
        await until(lambda: work.runs == 1)  # the scheduled one ran; the other waits to be asked
        assert list(schedules._loops) == ["pull:crm"]
        first = schedules._loops["pull:crm"][1]
        jobs[0] = job(work, spec=2)  # its definition changed: a new loop, due by the record
        await until(lambda: first.done() and "pull:crm" in schedules._loops)
        jobs.pop(0)  # gone: its loop stops
        await until(lambda: not schedules._loops)
        assert work.runs == 1
        await schedules.trigger(jobs[0])
        unscheduled = schedules.schedule(jobs[0])
        await finished(unscheduled)
        assert work.runs == 2 and (await unscheduled.state()).next_at is None
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


async def test_a_changed_job_read_through_the_admin_path_still_replaces_its_loop(
    store: Store,
) -> None:
    """The admin API reads a job's schedule as the definitions stand now, possibly before the
    set's next look: the loop started for the old job is still cancelled, and the new job's
    loop is what runs."""
    old, new = Work(), Work()
    jobs = [job(old, spec="old token")]
    schedules = ScheduleSet(lambda: jobs, store, holder="w1", refresh=0.01)
    runner = asyncio.create_task(schedules.run())
    try:
        await until(lambda: old.runs == 1)
        first = schedules._loops["pull:crm"][1]
        jobs[0] = job(new, spec="new token", interval=0.05)  # e.g. a rotated pull_token
        assert schedules.schedule(jobs[0]).job == jobs[0]  # GET /admin/v1/pulls, at once
        await until(first.done)
        await until(lambda: new.runs >= 2)  # the new job's loop runs, on its own interval
        looped = schedules.get("pull:crm")
        assert looped is not None and looped.job.spec == "new token"
        assert old.runs == 1
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
