"""The scheduled recompute (``dmp/segments/schedule.py``) and its wiring in the DMP server:
recency rules let browsers go as time passes, one worker per due recompute, failures logged and
retried, cancelled at shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import httpx
import pytest

from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.config import load_config
from cookiematch.config.dmp import DmpAnalyticsConfig, DmpConfig
from cookiematch.config.dmp_segments import DmpSegmentConfig
from cookiematch.dmp.keys import RECOMPUTE_LEASE_KEY
from cookiematch.dmp.segments import Segment, StoredProfiles, parse_rule
from cookiematch.dmp.segments.schedule import RECOMPUTE_JOB, RecomputeSchedule
from cookiematch.dmp.segments.service import SegmentService
from cookiematch.dmp.segments.source import ScannedProfile
from cookiematch.dmp.snapshot import ProfileSnapshot
from cookiematch.dmp.traits.writes import ProfileUpdate, TraitStore
from cookiematch.errors import StoreUnavailable
from cookiematch.roots.dmp import DmpCore, DmpServer, build_core
from cookiematch.storage import Store, connect_store
from cookiematch.storage.lease import holder_of
from storage.redis_servers import RedisClusterProcesses

from .helpers import NOW, FakeClock
from support.stores import shared_cluster  # noqa: F401

BUYERS = (DmpSegmentConfig(id="buyers", rule={"event": "purchase", "within_days": 30}),)


def dmp_core(store: Store, clock: FakeClock) -> DmpCore:
    """The DMP core of a configuration with the ``buyers`` segment, as the server builds it,
    on the key-value store alone (no analytics engine: segments follow each trait write)."""
    off = DmpAnalyticsConfig(engine="off")
    return build_core(DmpConfig(segments=BUYERS, analytics=off), store, clock=clock)


def segment_service(store: Store, clock: FakeClock) -> SegmentService:
    return dmp_core(store, clock).segments


def hourly(
    segments: SegmentService, store: Store, clock: FakeClock, holder: str = "w1", tick: float = 60
) -> RecomputeSchedule:
    return RecomputeSchedule(segments, store, interval=3600, holder=holder, clock=clock, tick=tick)


async def purchase(traits: TraitStore, uid: str, at: float) -> None:
    await traits.apply({uid: ProfileUpdate("crm", events={("purchase", int(at))})})


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_a_scheduled_recompute_makes_a_browser_leave_a_recency_segment(
    store: Store, clock: FakeClock
) -> None:
    core = dmp_core(store, clock)  # ingestion re-evaluates segments, as in the server
    segments = core.segments
    await purchase(core.traits, "recent", NOW - DAY)
    await purchase(core.traits, "older", NOW - 20 * DAY)
    assert await segments.segments_of("recent") == ["buyers"]  # joined when ingested
    assert await segments.segments_of("older") == ["buyers"]
    assert await segments.sizes() == {"buyers": 0}  # counted by recomputes: none yet
    schedule = hourly(segments, store, clock)
    assert await schedule.step() == 60  # no recompute yet: one now, then a look each tick
    assert schedule.runs == 1

    clock.now += 10 * DAY + 60  # "older" bought 30 days and a minute ago: nothing was ingested
    assert await segments.segments_of("older") == ["buyers"]  # stale until a recompute
    assert await schedule.step() == 60
    assert schedule.runs == 2
    assert await segments.segments_of("older") == []
    assert await segments.segments_of("recent") == ["buyers"]
    assert await segments.sizes() == {"buyers": 1}
    report = await segments.last_recompute()
    assert report is not None and (report.at, report.left) == (clock.now, 1)


async def test_the_schedule_counts_from_the_last_recompute_whoever_ran_it(
    store: Store, clock: FakeClock
) -> None:
    segments = segment_service(store, clock)
    await segments.recompute()  # as `cookiematch dmp segments recompute` does
    clock.now += 1800
    schedule = hourly(segments, store, clock)  # a worker (re)started half an hour later
    assert await schedule.step() == 60 and schedule.runs == 0
    state = await schedule.state()
    assert (state.interval_seconds, state.next_at, state.holder) == (3600, NOW + 3600, None)
    clock.now = NOW + 3600 - 10
    assert await schedule.step() == 10  # the next look is when it is due
    clock.now += 10
    assert await schedule.step() == 60 and schedule.runs == 1
    assert (await schedule.state()).next_at == NOW + 7200


@pytest.fixture(params=["sqlite", "cluster"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store several workers open: a SQLite file, or a real Redis Cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/shared.db"
    cluster: RedisClusterProcesses = request.getfixturevalue("shared_cluster")
    cluster.flushall()
    return cluster.url


async def test_only_one_worker_runs_a_due_recompute(shared_url: str) -> None:
    clock = FakeClock(time.time())  # near the wall clock: Redis also expires the lease natively
    stores = [await connect_store(shared_url, clock=clock) for _ in range(3)]
    try:
        schedules = [
            hourly(segment_service(s, clock), s, clock, holder=f"w{i}")
            for i, s in enumerate(stores)
        ]
        for round_ in range(1, 4):
            await asyncio.gather(*(s.step() for s in schedules))
            assert sum(s.runs for s in schedules) == round_
            assert await holder_of(stores[0], RECOMPUTE_LEASE_KEY) is None  # released
            await asyncio.gather(*(s.step() for s in schedules))  # not due again yet
            assert sum(s.runs for s in schedules) == round_
            clock.now += 3600
    finally:
        for s in stores:
            await s.close()


class FlakySource:
    """The stored profiles, but the first scans raise the given errors; ``block`` makes every
    scan wait forever (a recompute in progress)."""

    def __init__(self, store: Store, errors: Sequence[Exception] = (), block: bool = False):
        self._profiles = StoredProfiles(store)
        self.errors = list(errors)
        self.block = block
        self.scanning = asyncio.Event()

    async def snapshot(self, dmp_uid: str, now: float) -> ProfileSnapshot:
        return await self._profiles.snapshot(dmp_uid, now)

    async def snapshots(self, dmp_uids: Sequence[str], now: float) -> list[ProfileSnapshot]:
        return await self._profiles.snapshots(dmp_uids, now)

    async def scan(self, now: float) -> AsyncIterator[ScannedProfile]:
        self.scanning.set()
        if self.errors:
            raise self.errors.pop(0)
        if self.block:
            await asyncio.Event().wait()
        async for scanned in self._profiles.scan(now):
            yield scanned


def over(store: Store, source: FlakySource, clock: FakeClock) -> SegmentService:
    segment = Segment("seen", parse_rule({"exposed": "imp"}))
    return SegmentService(store, [segment], source, clock=clock)


async def test_a_failing_recompute_is_logged_and_retried_at_the_next_tick(
    store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cookiematch.dmp.schedule")
    errors = [RuntimeError("a bug"), StoreUnavailable("store down"), StoreUnavailable("again")]
    segments = over(store, FlakySource(store, errors), clock)
    schedule = hourly(segments, store, clock, tick=0.01)
    task = asyncio.create_task(schedule.run())
    await until(lambda: schedule.runs == 1)  # the fourth tick: each failure freed the lease
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    failed = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [(r.failures, r.exc_info is not None) for r in failed] == [  # type: ignore[attr-defined]
        (1, True),  # unexpected: its traceback, once
        (2, False),
        (3, False),
    ]
    assert "error='StoreUnavailable: store down' failures=2 retry_in=0s" in failed[1].message
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("working again after 3 failed attempts" in m for m in infos)
    assert any(m.startswith("scheduled segment recompute: profiles=0") for m in infos)
    assert (schedule.failures, schedule.last_error) == (0, None)
    assert await segments.last_recompute() is not None


async def test_shutdown_cancels_a_recompute_in_progress_and_frees_the_lease(
    store: Store, clock: FakeClock
) -> None:
    source = FlakySource(store, block=True)
    schedule = hourly(over(store, source, clock), store, clock, tick=0.01)
    task = asyncio.create_task(schedule.run())
    await asyncio.wait_for(source.scanning.wait(), 10)
    assert await holder_of(store, RECOMPUTE_LEASE_KEY) == "w1"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert await holder_of(store, RECOMPUTE_LEASE_KEY) is None
    assert schedule.runs == 0 and await over(store, source, clock).last_recompute() is None


# --- the server's wiring: [dmp] recompute_interval_minutes ------------------------------------


def dmp_config(tmp_path: Path, extra: str = "", *, segments: bool = True) -> Path:
    path = tmp_path / "dmp.toml"
    segment = '[[dmp.segments]]\nid = "buyers"\nrule = { event = "purchase", within_days = 30 }'
    path.write_text(
        f"""
[store]
url = "sqlite:///{tmp_path}/dmp.db"
[dmp]
admin_token = "0123456789abcdef0123"
{extra}
{segment if segments else ""}
"""
    )
    return path


async def test_the_server_runs_the_schedule_and_stops_it_at_shutdown(tmp_path: Path) -> None:
    config = load_config(dmp_config(tmp_path, "recompute_interval_minutes = 5"), environ={})
    assert config.dmp is not None
    server = DmpServer(config)
    app = server.app
    await app.startup()
    started = list(server.tasks)  # funnel flusher, definitions' refresh, console series, schedules
    try:
        assert server.core is not None and server.schedules is not None
        segments = server.core.segments
        report = None
        while report is None:  # no recompute yet: the first look runs one at once
            await asyncio.sleep(0.01)
            report = await segments.last_recompute()
        assert app.fallback is not None
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app.fallback), base_url="http://dmp"
        ) as client:
            answer = await client.get(
                "/admin/v1/segments", headers={"Authorization": "Bearer 0123456789abcdef0123"}
            )
        listing = answer.json()
        schedule = server.schedules.get(RECOMPUTE_JOB)
        assert schedule is not None and schedule.interval == 300
        assert listing["last_recompute"]["at"] == report.at
        assert listing["recompute_schedule"]["interval_seconds"] == 300
        assert listing["recompute_schedule"]["next_at"] == report.at + 300
    finally:
        await app.shutdown()
    assert len(started) == 4 and started[-1].cancelled() and server.tasks == []


@pytest.mark.parametrize(("extra", "segments"), [("recompute_interval_minutes = 0", True),
                                                 ("", False)])  # fmt: skip
async def test_no_schedule_when_switched_off_or_without_segments(
    tmp_path: Path, extra: str, segments: bool
) -> None:
    config = load_config(dmp_config(tmp_path, extra, segments=segments), environ={})
    assert config.dmp is not None
    server = DmpServer(config)
    await server.app.startup()
    await asyncio.sleep(0.05)  # the schedules looked at the jobs
    assert server.schedules is not None and server.schedules.get(RECOMPUTE_JOB) is None
    await server.app.shutdown()
