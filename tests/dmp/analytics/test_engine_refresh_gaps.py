"""A refresh after a long gap (``dmp/analytics/refresh.py``): past the marks' life or past
the names a refresh reads, every profile's online parts are reloaded and the browsers the
store no longer holds leave the engine; the engine's traits of the others are kept. On
SQLite on disk and a DuckDB file."""

from __future__ import annotations

from pathlib import Path

from cookiematch.dmp.analytics.refresh import SLACK, Refresh, refresh
from cookiematch.dmp.analytics.runs import EngineRuns
from cookiematch.dmp.change_marks import (
    MAX_READ_NAMES,
    MINUTE,
    SHARDS,
    changed_between,
    forget_minutes,
    mark_names,
)
from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.segment_exports import SegmentExports
from cookiematch.dmp.subjects import DmpSubjects
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.dmp.traits.writes import ProfileUpdate, TraitStore
from cookiematch.protocol.cookies import format_browser_id
from cookiematch.storage import Store

from ..helpers import FakeClock
from .test_engine_runs import runs
from .test_engine_store import SEGMENTS, TTL

HOUR = 3600.0
KEPT = format_browser_id(bytes(range(16)))
ERASED = format_browser_id(bytes(range(1, 17)))


def tier_gold() -> ProfileUpdate:
    update = ProfileUpdate("crm")
    update.merge({"tier": "gold"}, (), ())
    return update


async def synced_and_loaded(store: Store, clock: FakeClock, tmp_path: Path) -> EngineRuns:
    """Two synced browsers, one with a staged trait, loaded by a first refresh."""
    engine_runs = runs(store, clock, tmp_path)
    matches = MatchTable(store, TTL)
    await matches.record("dsp", KEPT, "D-kept", clock())
    await matches.record("dsp", ERASED, "D-erased", clock())
    traits = TraitStore(store, TraitCatalog(), clock=clock, staging=engine_runs.staging)
    await traits.apply({KEPT: tier_gold()})
    clock.now += 600
    async with engine_runs.engine() as engine:
        first = await engine_runs.refresh(engine, clock())
        assert first.full and first.staged == 1
    return engine_runs


async def erase(store: Store, clock: FakeClock, engine_runs: EngineRuns, uid: str) -> None:
    matches = MatchTable(store, TTL)
    exports = SegmentExports(store, [s.id for s in SEGMENTS], [])
    subjects = DmpSubjects(
        store, matches, exports, ["dsp"], clock=clock, staging=engine_runs.staging
    )
    await subjects.erase(uid)


async def test_a_browser_erased_while_its_marks_lapsed_unread_leaves_the_engine(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    engine_runs = await synced_and_loaded(store, clock, tmp_path)
    clock.now += 60
    erased_at = clock()
    await erase(store, clock, engine_runs, ERASED)
    clock.now += 3 * 86_400.0  # the erasure's mark lapses unread (downtime)
    assert await changed_between(store, erased_at, erased_at) == set()
    async with engine_runs.engine() as engine:
        found = await engine_runs.refresh(engine, clock())
        assert found == Refresh(full=True, profiles=1, removed=1, staged=1)
        assert engine.profile_count() == 1
        assert engine.profiles([ERASED]) == []
        [kept] = engine.profiles([KEPT])
    assert kept.syncs["dsp"].partner_uid == "D-kept"
    assert kept.attributes["tier"].value == "gold"  # the engine's traits, kept


async def test_a_gap_of_more_names_than_the_bound_reloads_every_profile(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    engine_runs = await synced_and_loaded(store, clock, tmp_path)
    clock.now += 60
    await erase(store, clock, engine_runs, ERASED)  # marked, but not read: the gap is too long
    await MatchTable(store, TTL).record("dsp", KEPT, "D-again", clock())
    clock.now += 3 * HOUR
    async with engine_runs.engine() as engine:
        found = await engine_runs.refresh(engine, clock())
        assert found == Refresh(full=True, profiles=1, removed=1, staged=1)
        assert engine.profile_count() == 1
        [kept] = engine.profiles([KEPT])
    assert kept.syncs["dsp"].partner_uid == "D-again"
    assert kept.attributes["tier"].value == "gold"
    # the next refresh, minutes later, reads its marks again
    clock.now += 300
    async with engine_runs.engine() as engine:
        again = await refresh(store, engine, engine_runs.context(clock()))
    assert again == Refresh(full=False, profiles=0)


def test_the_bound_is_two_hours_of_mark_maps() -> None:
    start = 1_000 * MINUTE
    assert mark_names(start, start + 119 * MINUTE) <= MAX_READ_NAMES
    assert mark_names(start, start + 120 * MINUTE) > MAX_READ_NAMES
    assert mark_names(start - SLACK, start + 5 * MINUTE) < MAX_READ_NAMES  # a scheduled gap


async def test_forgetting_deletes_the_latest_minutes_up_to_the_bound(
    store: Store, clock: FakeClock
) -> None:
    before = float(int(clock() // MINUTE) * MINUTE)
    matches = MatchTable(store, TTL)
    await matches.record("dsp", KEPT, "D", before - 3 * HOUR)  # marked 3 hours back
    await matches.record("dsp", ERASED, "D", before - MINUTE)  # and in the last minute
    # three hours of minutes asked for, two minutes' maps allowed: the latest two deleted
    forgot = await forget_minutes(store, before - 3 * HOUR, before, most=2 * SHARDS)
    assert forgot == 2
    assert await changed_between(store, before - MINUTE, before - 1) == set()
    assert await changed_between(store, before - 3 * HOUR, before - 3 * HOUR) == {KEPT}


async def test_a_browser_with_a_traits_map_alone_is_found_by_the_reload(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    legacy = format_browser_id(bytes(range(2, 18)))  # traits written before the engine owned them
    await TraitStore(store, TraitCatalog(), clock=clock).apply({legacy: tier_gold()})
    engine_runs = await synced_and_loaded(store, clock, tmp_path)
    clock.now += 3 * HOUR
    async with engine_runs.engine() as engine:
        found = await engine_runs.refresh(engine, clock())
        assert found == Refresh(full=True, profiles=3)
        [kept] = engine.profiles([legacy])
    assert kept.attributes["tier"].value == "gold"
