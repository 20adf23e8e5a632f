"""Scheduled jobs: each ``interval`` seconds after its last run, in one worker at a time.

A ``Job`` is a named piece of batch work (a segment recompute, a partner pull, a segment
export: ``dmp/jobs.py``). Every server worker of every instance on a store runs a
``Schedule`` per job; each step:

    read when the job last ran ──▶ not due yet: look again when it is (≤ ``tick`` s)
      └─ due ──▶ claim its lease ──▶ taken: another worker is on it; look again in ``tick`` s
                   └─ ours ──▶ read again ──▶ still due: run (the lease renewed meanwhile,
                               ``storage/lease.py``), keep its run record ──▶ release the lease

Due means ``last + interval`` has passed, ``last`` being when the last successful run started:
the job's own report where it keeps one (a recompute or an export run from the CLI counts),
else its run record. A failed step is logged and the next tick tries again; the loop ends only
when cancelled. ``trigger`` starts a run now, in the background, under the same lease (``Busy``
if it is held). Each run's record (``RunRecord``) is kept in the store for the admin API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from cookiematch.clock import Clock
from cookiematch.errors import Busy, CookiematchError, StorageError
from cookiematch.storage.base import Store
from cookiematch.storage.lease import Lease, holder_of

__all__ = ["Job", "RunRecord", "Schedule", "ScheduleSet", "ScheduleState"]

log = logging.getLogger(__name__)

TICK_SECONDS = 60.0
"""Longest wait between two looks at the schedule, and the wait after a failure."""
LEASE_SECONDS = 300.0
"""The lease's TTL: a worker that dies mid-run holds it this long at most."""

Counts = Mapping[str, int | float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One schedulable piece of work. ``work`` returns what the run did, as counts; jobs are
    equal when all but their callables are (``spec``: what the work is built from)."""

    name: str  # unique: "recompute", "pull:<partner>", "export:<segment>:<destination>"
    title: str  # for the log: "segment recompute", "pull of partner 'acme'"
    event: str  # the log event's name: "segments.recompute", "dmp.pull", "dmp.export"
    interval: float  # seconds; 0: only when triggered
    work: Callable[[], Awaitable[Counts]] = field(compare=False)
    lease_key: str
    record_key: str
    spec: object = None
    last_started: Callable[[], Awaitable[float | None]] | None = field(
        default=None, compare=False
    )  # when the last run started, by the job's own report


class RunRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The last run of a job, as the store keeps it."""

    job: str
    holder: str
    started_at: float
    finished_at: float | None = None  # None: running (or its worker died)
    ok: bool | None = None
    counts: dict[str, int | float] = msgspec.field(default_factory=dict)
    error: str | None = None
    last_ok_at: float | None = None  # when the last successful run started


class ScheduleState(msgspec.Struct, frozen=True):
    """A job's schedule as every worker sees it (all read from the store)."""

    interval_seconds: float
    next_at: float | None  # None: run only when triggered; in the past: running or failing
    holder: str | None  # the worker holding the lease now
    last_run: RunRecord | None = None


_record = msgspec.json.Decoder(RunRecord)


class Schedule:
    """Runs one job every ``job.interval`` seconds, one worker at a time; or when triggered."""

    def __init__(
        self,
        job: Job,
        store: Store,
        *,
        holder: str,
        clock: Clock = time.time,
        tick: float = TICK_SECONDS,
        lease_ttl: float = LEASE_SECONDS,
    ) -> None:
        if not (job.interval >= 0 and tick > 0):
            raise ValueError("the interval must not be negative, the tick must be positive")
        self.job = job
        self._store = store
        self.tick = tick
        self._clock = clock
        self.lease = Lease(store, job.lease_key, holder, ttl=lease_ttl, clock=clock)
        self.runs = 0  # runs this worker finished
        self.failures = 0  # consecutive failed steps
        self.last_error: str | None = None
        self._triggered: asyncio.Task[None] | None = None

    @property
    def interval(self) -> float:
        return self.job.interval

    @property
    def running(self) -> bool:
        """A run asked for (``trigger``) is in progress in this worker."""
        return self._triggered is not None and not self._triggered.done()

    async def record(self) -> RunRecord | None:
        raw = await self._store.get(self.job.record_key)
        if raw is None:
            return None
        try:
            return _record.decode(raw)
        except msgspec.DecodeError:
            return None  # written by another version: the next run replaces it

    async def last_started(self, record: RunRecord | None) -> float | None:
        """When the last successful run started, from the job's report or its record."""
        own = None if self.job.last_started is None else await self.job.last_started()
        kept = None if record is None else record.last_ok_at
        return max((t for t in (own, kept) if t is not None), default=None)

    def next_at(self, last: float | None) -> float:
        """When the run after one started at ``last`` is due (now if there was none)."""
        return self._clock() if last is None else last + self.interval

    async def _wait(self) -> float:
        """Seconds until the next look: until due, at most a tick; 0 if due now."""
        last = await self.last_started(await self.record())
        return min(max(self.next_at(last) - self._clock(), 0.0), self.tick)

    async def step(self) -> float:
        """Run if due and this worker gets the lease; the seconds to wait before the next step.
        Raises what the store or the job raised (the lease is released)."""
        if not self.interval:
            return self.tick  # run only when triggered
        wait = await self._wait()
        if wait > 0:
            return wait
        if not await self.lease.claim():
            return self.tick  # another worker holds it: running, or about to
        try:
            wait = await self._wait()
            if wait > 0:
                return wait  # another worker or the CLI finished one meanwhile
            await self._run_held()
        finally:
            with contextlib.suppress(StorageError):
                await self.lease.release()
        wait = await self._wait()
        self.runs += 1  # after the last await: a finished step is counted with its outcome
        return wait

    async def _run_held(self) -> Counts:
        """Run the job under the lease this worker holds, its record kept before and after."""
        job, before = self.job, await self.record()
        started = self._clock()
        last_ok = None if before is None else before.last_ok_at
        running = RunRecord(
            job=job.name, holder=self.lease.holder, started_at=started, last_ok_at=last_ok
        )
        await self._keep(running)
        try:
            counts = await self.lease.run(job.work())
        except (Exception, asyncio.CancelledError) as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            error = (
                "cancelled (the worker stopped)" if cancelled else f"{type(exc).__name__}: {exc}"
            )
            failed = msgspec.structs.replace(
                running, finished_at=self._clock(), ok=False, error=error
            )
            with contextlib.suppress(Exception):
                await self._keep(failed)
            raise
        done = msgspec.structs.replace(
            running, finished_at=self._clock(), ok=True, counts=dict(counts), last_ok_at=started
        )
        await self._keep(done)
        summary = " ".join(f"{k}={_show(v)}" for k, v in counts.items())
        log.info(
            "scheduled %s: %s", job.title, summary,
            extra={"event": job.event, "job": job.name, **counts},
        )  # fmt: skip
        return counts

    async def _keep(self, record: RunRecord) -> None:
        await self._store.set(self.job.record_key, msgspec.json.encode(record))

    async def trigger(self) -> None:
        """Start a run now in the background; ``Busy`` if one is running anywhere."""
        if self.running or not await self.lease.claim():
            holder = await holder_of(self._store, self.job.lease_key)
            raise Busy(f"{self.job.title} is running (held by {holder or 'this worker'})")
        self._triggered = asyncio.create_task(self._run_triggered())

    async def _run_triggered(self) -> None:
        try:
            await self._run_held()
            self.runs += 1
        except Exception as exc:
            self._failed(exc, None)
        finally:
            with contextlib.suppress(StorageError):
                await self.lease.release()

    async def run(self) -> None:
        """Step forever, until cancelled; a failed step is logged and retried a tick later."""
        try:
            while True:
                try:
                    wait = await self.step()
                except Exception as exc:
                    wait = self.tick
                    self._failed(exc, wait)
                else:
                    if self.failures:
                        log.info(
                            "scheduled %s: working again after %d failed attempts",
                            self.job.title, self.failures,
                        )  # fmt: skip
                    self.failures, self.last_error = 0, None
                await asyncio.sleep(wait)
        finally:
            await self.close()

    async def close(self) -> None:
        """Cancel a triggered run in progress (its lease is freed)."""
        task, self._triggered = self._triggered, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _failed(self, exc: Exception, wait: float | None) -> None:
        """One line per failure; a traceback only for the first unexpected one in a row."""
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        unexpected = not isinstance(exc, CookiematchError)
        retry = "" if wait is None else f" retry_in={wait:.0f}s"
        log.warning(
            "scheduled %s failed: error=%r failures=%d%s",
            self.job.title, self.last_error, self.failures, retry,
            exc_info=exc if unexpected and self.failures == 1 else None,
            extra={"event": f"{self.job.event}.failed", "job": self.job.name,
                   "error": self.last_error, "failures": self.failures, "retry_in": wait},
        )  # fmt: skip

    async def state(self) -> ScheduleState:
        record, holder = await asyncio.gather(
            self.record(), holder_of(self._store, self.job.lease_key)
        )
        next_at = self.next_at(await self.last_started(record)) if self.interval else None
        return ScheduleState(self.interval, next_at, holder, record)


def _show(value: int | float) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


class ScheduleSet:
    """The schedules of a changing set of jobs (``jobs()`` is read again each ``refresh``): a
    job that appears gets its loop, one that goes away (or changes) has its loop cancelled.

    Each loop keeps the ``Schedule`` it was started for, and only ``reconcile`` starts or
    cancels loops: reading a job's state (``schedule``) never replaces a loop, so a job that
    changed (a rotated ``pull_token``, a new ``pull_url``) always has its old loop cancelled
    at the next look. A run asked for (``trigger``) of a job that has no loop of that very job
    runs on a schedule of its own, kept until it ends so that ``close`` cancels it."""

    def __init__(
        self,
        jobs: Callable[[], Iterable[Job]],
        store: Store,
        *,
        holder: str,
        clock: Clock = time.time,
        tick: float = TICK_SECONDS,
        lease_ttl: float = LEASE_SECONDS,
        refresh: float = 1.0,
    ) -> None:
        self._jobs = jobs
        self._store = store
        self._holder = holder
        self._clock = clock
        self._tick = tick
        self._lease_ttl = lease_ttl
        self._refresh = refresh
        self._loops: dict[str, tuple[Schedule, asyncio.Task[None]]] = {}
        self._asked: dict[str, Schedule] = {}  # runs asked for of jobs without their loop

    def _new(self, job: Job) -> Schedule:
        return Schedule(
            job, self._store, holder=self._holder, clock=self._clock, tick=self._tick,
            lease_ttl=self._lease_ttl,
        )  # fmt: skip

    def _kept(self, job: Job) -> Schedule | None:
        """The looped or asked-for schedule of exactly ``job``, if there is one."""
        looped = self._loops.get(job.name)
        if looped is not None and looped[0].job == job:
            return looped[0]
        asked = self._asked.get(job.name)
        return asked if asked is not None and asked.job == job else None

    def schedule(self, job: Job) -> Schedule:
        """The schedule of ``job`` as it stands now, to read its state (nothing is kept)."""
        return self._kept(job) or self._new(job)

    async def trigger(self, job: Job) -> None:
        """Start a run of ``job`` now (``Schedule.trigger``: ``Busy`` if one is running)."""
        found = self._kept(job)
        if found is None:
            running = self._asked.get(job.name)
            if running is not None and running.running:
                found = running  # a run of the job as it was: Busy until it ends
            else:
                found = self._asked[job.name] = self._new(job)
        await found.trigger()

    def get(self, name: str) -> Schedule | None:
        """The schedule looping for the job called ``name`` (None: not scheduled)."""
        looped = self._loops.get(name)
        return None if looped is None else looped[0]

    def reconcile(self) -> None:
        """Loops for the jobs of now, none for the others."""
        wanted = {job.name: job for job in self._jobs() if job.interval > 0}
        for name, (schedule, task) in list(self._loops.items()):
            if name not in wanted or schedule.job != wanted[name]:
                task.cancel()
                del self._loops[name]
        for name, job in wanted.items():
            if name not in self._loops:
                schedule = self._new(job)
                self._loops[name] = (schedule, asyncio.create_task(schedule.run()))
        for name, asked in list(self._asked.items()):
            if not asked.running:
                del self._asked[name]

    async def run(self) -> None:
        """Reconcile every ``refresh`` seconds until cancelled; then stop every loop."""
        try:
            while True:
                self.reconcile()
                await asyncio.sleep(self._refresh)
        finally:
            await self.close()

    async def close(self) -> None:
        loops, self._loops = list(self._loops.values()), {}
        for _, task in loops:
            task.cancel()
        for schedule, task in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await schedule.close()
        asked, self._asked = list(self._asked.values()), {}
        for schedule in asked:
            await schedule.close()
