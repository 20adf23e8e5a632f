"""The recompute on the analytics engine as the DMP runs it (``EngineRuns``, behind the scheduled
job), against real stores (SQLite on disk, a real Redis, a real 3-master cluster) and a DuckDB
file on disk: its memberships are the per-profile recompute's on the same data, an online write
reaches the next recompute through its change mark (and only through it), the migration loads
every profile, and one process at a time holds the engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from cookiematch.cli.main import main
from cookiematch.config import load_config
from cookiematch.dmp import keys
from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.recompute import recompute
from cookiematch.dmp.analytics.refresh import SLACK, Refresh, refresh
from cookiematch.dmp.analytics.runs import EngineRuns
from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.change_marks import MARK_TTL, changed_between
from cookiematch.dmp.events import EventLog, parse_event
from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.overlap import CountedAudiences, segment_audience
from cookiematch.dmp.segment_exports import SegmentExports
from cookiematch.dmp.segments import SegmentUpdater, StoredProfiles
from cookiematch.dmp.segments.membership import Memberships
from cookiematch.dmp.segments.schedule import recompute_job
from cookiematch.dmp.segments.service import SegmentService
from cookiematch.dmp.subjects import DmpSubjects
from cookiematch.dmp.traits.reader import ProfileReader
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.dmp.traits.staging import TraitStaging
from cookiematch.dmp.traits.writes import ProfileUpdate, TraitStore
from cookiematch.errors import Busy, ConfigError
from cookiematch.protocol.cookies import format_browser_id
from cookiematch.roots.dmp import open_core
from cookiematch.storage import Store, connect_store

from ..helpers import FakeClock
from ..segment_stores import clocked_store, wall_clock  # noqa: F401
from ..store_scan import members_of
from .test_engine_store import SEGMENTS, TTL, populate, uid_of
from support.stores import shared_cluster, shared_redis  # noqa: F401

PROFILES = 60
DAY = 86_400.0


def settings(tmp_path: Path) -> AnalyticsSettings:
    return AnalyticsSettings(str(tmp_path / "analytics" / "dmp.duckdb"))


def runs(store: Store, clock: FakeClock, tmp_path: Path, holder: str = "w1") -> EngineRuns:
    """As ``roots/dmp.py`` builds them: the engine opened per job, on a file, with its
    staging beside it."""
    found = settings(tmp_path)
    return EngineRuns(
        lambda: DuckDBEngine(found), store, Memberships(store, TTL), TraitCatalog(),
        holder=holder, clock=clock, staging=TraitStaging(found.staging_directory),
    )  # fmt: skip


def online_traits(store: Store, clock: FakeClock, engine_runs: EngineRuns) -> TraitStore:
    """The online trait writes when the engine owns the traits: staged for it."""
    return TraitStore(store, TraitCatalog(), clock=clock, staging=engine_runs.staging)


def per_profile(store: Store, clock: FakeClock) -> SegmentService:
    reader = ProfileReader(store, clock=clock)
    source = StoredProfiles(store, reader.build, ProfileReader.SUFFIXES)
    return SegmentService(store, SEGMENTS, source, memberships=Memberships(store, TTL), clock=clock)


@pytest.fixture
async def twin(tmp_path: Path, wall_clock: FakeClock) -> AsyncIterator[Store]:  # noqa: F811
    """A second store (SQLite) for the per-profile path, on the same clock."""
    store = await connect_store(f"sqlite://{tmp_path / 'twin.db'}", clock=wall_clock)
    yield store
    await store.close()


async def memberships_of(store: Store, uids: list[str]) -> list[dict[str, float]]:
    return await Memberships(store, TTL).of_many(uids)


async def same_as_per_profile(store: Store, clock: FakeClock) -> None:
    """The per-profile recompute on the same store finds nothing left to write."""
    old = SegmentUpdater(
        store, SEGMENTS, per_profile(store, clock)._source, memberships=Memberships(store, TTL),
        clock=clock,
    )  # fmt: skip
    again = await old.recompute(sketches=False)
    assert (again.joined, again.left, again.refreshed) == (0, 0, 0)


async def test_the_scheduled_recompute_on_the_engine_gives_the_per_profile_memberships(
    clocked_store: Store,  # noqa: F811
    twin: Store,
    wall_clock: FakeClock,  # noqa: F811
    tmp_path: Path,
) -> None:
    await populate(clocked_store, wall_clock, PROFILES)
    await populate(twin, wall_clock, PROFILES)
    engine_runs = runs(clocked_store, wall_clock, tmp_path)
    service = per_profile(clocked_store, wall_clock)

    job = recompute_job(service, 300.0, run=lambda: engine_runs.recompute(SEGMENTS))
    counts = await job.work()  # the scheduled job's work, on the engine
    old = await per_profile(twin, wall_clock).recompute(sketches=False)

    assert counts["profiles"] == old.profiles == PROFILES
    assert (counts["joined"], counts["left"]) == (old.joined, old.left)
    uids = [uid_of(i) for i in range(PROFILES)]
    assert await memberships_of(clocked_store, uids) == await memberships_of(twin, uids)
    for segment in SEGMENTS:
        assert await members_of(clocked_store, segment.id) == await members_of(twin, segment.id)
    report = await service.last_recompute()
    assert report is not None and report.sizes == old.sizes  # the schedule's due time reads it
    await same_as_per_profile(clocked_store, wall_clock)

    # overlap: the engine's figures, read from the store, equal the exact scan's
    names = [segment_audience(s.id) for s in SEGMENTS]
    counted_service = SegmentService(
        clocked_store, SEGMENTS, service._source, clock=wall_clock, counted_overlap=True
    )
    counted, pairs = await counted_service.overlap(names, exact=False)
    assert isinstance(counted, CountedAudiences)
    _, expected = await per_profile(twin, wall_clock).overlap(names, exact=True)
    assert [(p.a, p.b, p.size_a, p.size_b, p.both, p.population) for p in pairs] == [
        (p.a, p.b, p.size_a, p.size_b, p.both, p.population) for p in expected
    ]


async def test_an_online_write_reaches_the_next_recompute_by_its_change_mark(
    clocked_store: Store,  # noqa: F811
    wall_clock: FakeClock,  # noqa: F811
    tmp_path: Path,
) -> None:
    store, clock = clocked_store, wall_clock
    await populate(store, clock, PROFILES)
    engine_runs = runs(store, clock, tmp_path)
    clock.now += 600  # past the slack the reload reads back (their marks are older)
    await engine_runs.recompute(SEGMENTS)  # the first: a full load

    clock.now += 600
    # online writes: traits (the ingestion, pending records), a sync, an impression pixel
    young = uid_of(1)  # odd: not synced to "dsp"
    update = ProfileUpdate("crm")
    update.merge({"age": 20, "tier": "gold"}, (), {("purchase", int(clock.now))})
    await online_traits(store, clock, engine_runs).apply({young: update})  # staged, not marked
    synced = uid_of(3)
    await MatchTable(store, TTL).record("dsp", synced, "D3", clock())
    log = EventLog(store, max_per_profile=20, ttl_seconds=90 * DAY)
    seen = uid_of(5)
    for _ in range(2):
        await log.record(seen, parse_event({"campaign": "c1", "site": "s9"}), clock())
    # a trait written to the store once the engine owns them (as no writer of the DMP does)
    # is not read
    hidden = uid_of(7)
    await store.hset(keys.traits_key(hidden), {"a|tags": msgspec.json.encode(["shoes"])})

    marked = await changed_between(store, clock() - 60, clock())
    assert marked == {synced, seen}

    async with engine_runs.engine() as engine:
        found = await engine_runs.refresh(engine, clock())
        assert found == Refresh(full=False, profiles=2, staged=1)
        report = await recompute(engine, SEGMENTS, engine_runs.memberships, clock())
    assert report.joined > 0
    segments_of = dict(zip([young, synced, seen, hidden],
                           await memberships_of(store, [young, synced, seen, hidden]),
                           strict=True))  # fmt: skip
    assert {"gold_buyers", "young_unsynced"} <= set(segments_of[young])
    assert "young_unsynced" not in segments_of[synced]
    assert "exposed_c1" in segments_of[seen]
    assert "shoes" not in segments_of[hidden]  # not staged: the engine still has the old

    # marked as a writer would mark it: its online parts are read again, its traits are not
    await store.hset_many([(keys.change_mark_key(int(clock() // 60), 0), {hidden: b"1"}, MARK_TTL)])
    await engine_runs.recompute(SEGMENTS)
    assert "shoes" not in (await memberships_of(store, [hidden]))[0]
    # staged, it is
    tags = ProfileUpdate("crm")
    tags.merge({"tags": ["shoes"]}, (), ())
    await online_traits(store, clock, engine_runs).apply({hidden: tags})
    await engine_runs.recompute(SEGMENTS)
    assert "shoes" in (await memberships_of(store, [hidden]))[0]


async def test_a_refresh_deletes_the_marks_the_next_one_will_not_read(
    clocked_store: Store,  # noqa: F811
    wall_clock: FakeClock,  # noqa: F811
    tmp_path: Path,
) -> None:
    store, clock = clocked_store, wall_clock
    await populate(store, clock, PROFILES)
    engine_runs = runs(store, clock, tmp_path)
    clock.now += 600
    await engine_runs.recompute(SEGMENTS)  # the first: a full load

    matches = MatchTable(store, TTL)
    clock.now += 60
    early = clock()
    await matches.record("dsp", uid_of(0), "early", clock())
    clock.now += SLACK + 120  # the next refresh starts reading after the early mark
    await matches.record("dsp", uid_of(2), "late", clock())
    async with engine_runs.engine() as engine:
        found = await refresh(store, engine, engine_runs.context(clock()))
    assert found == Refresh(full=False, profiles=2)
    assert await changed_between(store, early - 1, early + 1) == set()  # read for good: deleted
    assert await changed_between(store, clock() - 1, clock()) == {uid_of(2)}  # read again next


async def test_an_erased_browser_leaves_the_engine_and_its_segments(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    await populate(store, clock, 12)
    gone = format_browser_id(bytes(range(16)))  # erasure takes a real DMP uid
    update = ProfileUpdate("crm")
    update.merge({"tags": ["shoes"]}, (), ())
    await TraitStore(store, TraitCatalog(), clock=clock).apply({gone: update})
    engine_runs = runs(store, clock, tmp_path)
    clock.now += 600
    first = await engine_runs.recompute(SEGMENTS)
    assert gone in await members_of(store, "shoes")

    clock.now += 60
    exports = SegmentExports(store, [s.id for s in SEGMENTS], [])
    subjects = DmpSubjects(store, MatchTable(store, TTL), exports, ["dsp"], clock=clock)
    await subjects.erase(gone)
    clock.now += 60
    async with engine_runs.engine() as engine:
        found = await refresh(store, engine, engine_runs.context(clock()))
        assert found == Refresh(full=False, profiles=0, removed=1)
        assert engine.profile_count() == 12
        assert engine.profiles([gone]) == []  # its memberships with it
        report = await recompute(engine, SEGMENTS, engine_runs.memberships, clock())
    assert report.profiles == first.profiles - 1 and report.left == 0  # erasure removed them
    assert report.sizes["shoes"] == first.sizes["shoes"] - 1
    for segment in SEGMENTS:
        assert gone not in await members_of(store, segment.id)


async def test_the_migration_loads_every_profile_and_round_trips(
    store: Store, twin: Store, clock: FakeClock, tmp_path: Path
) -> None:
    await populate(store, clock, PROFILES)
    await populate(twin, clock, PROFILES)
    engine_runs = runs(store, clock, tmp_path)
    loaded, report = await engine_runs.migrate(SEGMENTS)
    old = await per_profile(twin, clock).recompute(sketches=False)
    assert loaded == PROFILES and (report.joined, report.left) == (old.joined, old.left)
    uids = [uid_of(i) for i in range(PROFILES)]
    assert await memberships_of(store, uids) == await memberships_of(twin, uids)

    again_loaded, again = await engine_runs.migrate(SEGMENTS)  # whatever it held: replaced
    assert again_loaded == PROFILES and (again.joined, again.left, again.refreshed) == (0, 0, 0)
    reopened = DuckDBEngine(settings(tmp_path))
    try:
        assert reopened.profile_count() == PROFILES
        assert reopened.checkpoint("profiles_loaded_through") == clock()
    finally:
        reopened.close()


async def test_one_process_at_a_time_holds_the_engine(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    first, second = runs(store, clock, tmp_path, "w1"), runs(store, clock, tmp_path, "w2")
    async with first.engine():
        with pytest.raises(Busy, match="w1"):
            await second.recompute(SEGMENTS)
    await second.recompute(SEGMENTS)  # released


def test_the_migration_command_loads_an_existing_dmp(tmp_path: Path) -> None:
    config = tmp_path / "dmp.toml"
    config.write_text(
        f"""
[store]
url = "sqlite:///{tmp_path / "dmp.db"}"

[dmp]
listen = "127.0.0.1:8720"

[[dmp.segments]]
id = "shoes"
rule = {{ attribute = "tags", op = "in", value = ["shoes"] }}
"""
    )
    asyncio.run(_seed_profiles(tmp_path / "dmp.db"))
    runner = CliRunner()
    migrated = runner.invoke(main, ["dmp", "migrate-to-engine", "--config", str(config)])
    assert migrated.exit_code == 0, migrated.output
    assert "3 profiles loaded into the analytics engine" in migrated.output
    assert f"  {'shoes':<32} 2\n" in migrated.output
    # the member index an earlier version wrote is deleted, the sketches kept
    assert migrated.output.rstrip().endswith("2 maps of the retired member index deleted")
    assert asyncio.run(_index_keys(tmp_path / "dmp.db")) == (0, 1)
    assert (tmp_path / "var" / "dmp-analytics.duckdb").is_file()  # beside the configuration
    sizes = runner.invoke(main, ["dmp", "segments", "sizes", "--config", str(config)])
    assert sizes.output.split() == ["shoes", "2"]
    off = config.read_text() + '\n[dmp.analytics]\nengine = "off"\n'
    config.write_text(off)
    refused = runner.invoke(main, ["dmp", "migrate-to-engine", "--config", str(config)])
    assert refused.exit_code != 0 and "off" in refused.output


async def _seed_profiles(path: Path) -> None:
    store = await connect_store(f"sqlite://{path}")
    traits = TraitStore(store, TraitCatalog(), clock=time.time)
    updates = {}
    for uid, tags in (("a", ["shoes"]), ("b", ["hats"]), ("c", ["shoes", "bags"])):
        update = ProfileUpdate("crm")
        update.merge({"tags": tags}, (), ())
        updates[uid] = update
    await traits.apply(updates)
    # an earlier version's member index (two shards of "shoes"), beside a segment's sketch
    await store.hset("dmps:{shoes:007}:m", {"a": b"1700000000"}, ttl=3600.0)
    await store.hset("dmps:{shoes:123}:m", {"c": b"1700000000"})
    await store.set("dmps:{segment:shoes}:sketch", b"sketch")
    await store.close()


async def _index_keys(path: Path) -> tuple[int, int]:
    """The member index's maps and the sketches left in the store."""
    store = await connect_store(f"sqlite://{path}")
    maps = [k async for k, _ in store.scan_maps("dmps:{")]
    sketches = [k async for k, _ in store.scan("dmps:{")]
    await store.close()
    return len(maps), len(sketches)


@pytest.mark.parametrize("engine", ["duckdb", "off"])
async def test_the_composition_root_builds_the_configured_engine(
    tmp_path: Path, engine: str
) -> None:
    config = tmp_path / "dmp.toml"
    config.write_text(
        f"""
[store]
url = "sqlite://dmp.db"

[dmp]
[[dmp.segments]]
id = "shoes"
rule = {{ attribute = "tags", op = "in", value = ["shoes"] }}

[dmp.analytics]
engine = "{engine}"
"""
    )
    await _seed_profiles(tmp_path / "dmp.db")
    async with open_core(load_config(config)) as core:
        report = await core.recompute()
        assert report.sizes == {"shoes": 2}
        file = tmp_path / "var" / "dmp-analytics.duckdb"
        if engine == "off":
            assert core.analytics is None and not file.exists()
            assert report.sketches  # the per-profile recompute's
        else:
            assert core.analytics is not None and file.is_file()
            assert not await core.store.get(keys.ANALYTICS_LEASE_KEY)  # released
            counted = await core.segments.counted()
            assert counted.sizes == {"segment:shoes": 2} and counted.population == 3
        # online writes mark the browsers they change only for an engine to read; trait
        # writes are staged for it (it owns them), else written to the store
        update = ProfileUpdate("crm")
        update.merge({"tier": "gold"}, (), set())
        await core.traits.apply({"written-online": update})
        await core.matches.record("dsp", "synced-online", "D1", time.time())
        marked = await changed_between(core.store, time.time() - 60, time.time() + 60)
        assert "written-online" not in marked
        assert ("synced-online" in marked) is (engine != "off")
        staged = tmp_path / "var" / "dmp-analytics.duckdb.staging"
        assert bool(list(staged.glob("*.stg"))) is (engine != "off")
        traits = await core.store.hgetall(keys.traits_key("written-online"))
        assert bool(traits) is (engine == "off")


def test_an_unknown_engine_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "dmp.toml"
    config.write_text('[dmp]\n[dmp.analytics]\nengine = "oracle"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert "dmp.analytics.engine" in str(caught.value)
