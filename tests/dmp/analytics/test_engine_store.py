"""The analytics engine against the key-value store it serves, both real (SQLite on disk,
DuckDB on disk): profiles written by the DMP's own writers are loaded into the engine, its
recompute writes only the membership diff, the per-profile recompute then finds nothing left
to change, and the overlap of every pair is the one the store's exact path counts."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.dmp import keys
from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.load import LoadContext, load_profiles, profile_rows
from cookiematch.dmp.analytics.recompute import recompute
from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.events import EventLog, ImpressionEvent, parse_event
from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.overlap import segment_audience
from cookiematch.dmp.segments import Segment, SegmentUpdater, StoredProfiles, parse_rule
from cookiematch.dmp.segments.membership import Memberships
from cookiematch.dmp.segments.service import SegmentService
from cookiematch.dmp.traits.reader import ProfileReader
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.dmp.traits.writes import ProfileUpdate, TraitStore
from cookiematch.storage import Store

from ..helpers import FakeClock

DAY = float(SECONDS_PER_DAY)
TTL = 390 * DAY
SEGMENTS = [
    Segment("gold_buyers", parse_rule({"all": [
        {"attribute": "tier", "value": "gold"}, {"event": "purchase", "within_days": 30},
    ]})),
    Segment("openers", parse_rule({"event": "email_open", "within_days": 7, "at_least": 2})),
    Segment("exposed_c1", parse_rule({"exposed": "imp", "campaign": "c1", "at_least": 2})),
    Segment("young_unsynced", parse_rule({"all": [
        {"attribute": "age", "op": "lt", "value": 30}, {"not": {"synced": "dsp"}},
    ]})),
    Segment("shoes", parse_rule({"attribute": "tags", "op": "in", "value": ["shoes"]})),
]  # fmt: skip


def uid_of(i: int) -> str:
    return f"u{i:04d}"


async def populate(store: Store, clock: FakeClock, profiles: int) -> None:
    """Profiles written by the DMP's writers: traits, syncs, impression-pixel tallies."""
    rng = random.Random(3)
    traits = TraitStore(store, TraitCatalog(), clock=clock)
    matches = MatchTable(store, TTL)
    log = EventLog(store, max_per_profile=20, ttl_seconds=90 * DAY)
    now = clock()
    updates: dict[str, ProfileUpdate] = {}
    for i in range(profiles):
        uid = uid_of(i)
        update = ProfileUpdate("crm")
        update.merge(
            {
                "tier": rng.choice(("gold", "silver")),
                "age": rng.choice((18, 29, 29.5, 30, 45)),
                "tags": rng.choice((["shoes", "bags"], [], ["hats"])),
            },
            (),
            {
                (rng.choice(("purchase", "email_open")), int(now - rng.randint(0, 40) * DAY))
                for _ in range(rng.randint(0, 4))
            },
        )
        updates[uid] = update
        if i % 2 == 0:
            await matches.record("dsp", uid, f"D{i}", now)
        for _ in range(i % 4):
            await log.record(uid, parse_event({"campaign": "c1", "site": f"s{i % 2}"}), now)
    await traits.apply(updates)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[DuckDBEngine]:
    found = DuckDBEngine(AnalyticsSettings(str(tmp_path / "analytics" / "dmp.duckdb")))
    yield found
    found.close()


def context(clock: FakeClock, ttl: float = TTL) -> LoadContext:
    return LoadContext(clock(), TraitCatalog(), ttl)


def old_updater(store: Store, clock: FakeClock) -> SegmentUpdater:
    reader = ProfileReader(store, clock=clock)
    source = StoredProfiles(store, reader.build, ProfileReader.SUFFIXES)
    return SegmentUpdater(store, SEGMENTS, source, memberships=Memberships(store, TTL), clock=clock)


async def test_the_engine_writes_what_the_per_profile_recompute_would(
    store: Store, clock: FakeClock, engine: DuckDBEngine
) -> None:
    await populate(store, clock, 80)
    assert await load_profiles(store, engine, context(clock), batch=7) == 80
    report = await recompute(engine, SEGMENTS, Memberships(store, TTL), clock())
    assert report.profiles == 80 and report.left == 0 and report.joined > 0
    assert all(report.sizes.values()), report.sizes  # every segment has members

    again = await old_updater(store, clock).recompute(sketches=False)
    assert (again.joined, again.left, again.refreshed) == (0, 0, 0)  # nothing left to write
    assert again.sizes == report.sizes
    assert report.joined == sum(report.sizes.values())

    service = SegmentService(store, SEGMENTS, old_updater(store, clock)._source, clock=clock)
    names = sorted(s.id for s in SEGMENTS)
    _, expected = await service.overlap([segment_audience(n) for n in names], exact=True)
    found = engine.overlap(names, clock())
    assert [(p.a, p.b, p.both.value, p.union.value) for p in found] == [
        (p.a.removeprefix("segment:"), p.b.removeprefix("segment:"), p.both.value, p.union.value)
        for p in expected
    ]
    assert {p.population.value for p in found} == {80.0}


async def test_only_the_diff_is_written(
    store: Store, clock: FakeClock, engine: DuckDBEngine
) -> None:
    await populate(store, clock, 40)
    ttl = 40 * DAY  # memberships due for a rewrite after 20 days
    memberships = Memberships(store, ttl)
    await load_profiles(store, engine, context(clock, ttl))
    first = await recompute(engine, SEGMENTS, memberships, clock())
    same = await recompute(engine, SEGMENTS, memberships, clock())
    assert (same.joined, same.left, same.refreshed) == (0, 0, 0)
    assert same.sizes == first.sizes

    uid = uid_of(1)  # not synced; make it young and gold with a recent purchase
    clock.now += 60
    update = ProfileUpdate("crm")
    update.merge({"age": 20, "tier": "gold"}, (), {("purchase", int(clock.now))})
    await TraitStore(store, TraitCatalog(), clock=clock).apply({uid: update})
    before = set(await memberships.of(uid))
    await load_profiles(store, engine, context(clock, ttl))  # its memberships come back too
    changed = await recompute(engine, SEGMENTS, memberships, clock())
    after = set(await memberships.of(uid))
    assert after >= {"gold_buyers", "young_unsynced"}
    assert (changed.joined, changed.left) == (len(after - before), len(before - after))
    assert (changed.joined, changed.left) != (0, 0)

    # time passes: windows close (leaves), entries past half their lifetime are rewritten
    clock.now += 35 * DAY
    held = sum(changed.sizes.values())
    await load_profiles(store, engine, context(clock, ttl))
    later = await recompute(engine, SEGMENTS, memberships, clock())
    assert later.left > 0 and later.joined == 0
    assert later.refreshed == held - later.left > 0
    for i in range(40):
        entries = await store.hgetall_entries(keys.membership_key(uid_of(i)))
        assert all(left == pytest.approx(ttl) for _, left in entries.values())
    old = old_updater(store, clock)
    old.memberships = memberships
    again = await old.recompute(sketches=False)
    assert (again.joined, again.left, again.refreshed) == (0, 0, 0)


async def test_a_profile_loads_with_when_each_value_lapses(
    store: Store, clock: FakeClock, engine: DuckDBEngine
) -> None:
    catalog = TraitCatalog(attribute_ttl=10 * DAY)
    update = ProfileUpdate("crm")
    update.merge({"tier": "gold", "n": 2**70}, (), {("purchase", int(clock() - DAY))})
    await TraitStore(store, catalog, clock=clock).apply({"u1": update})
    await MatchTable(store, TTL).record("dsp", "u1", "D1", clock())
    await EventLog(store, max_per_profile=5, ttl_seconds=DAY).record(
        "u1",
        ImpressionEvent(parse_event({"event": "click", "campaign": "c9"}).event, "c9"),
        clock(),
    )
    await store.hset(keys.consent_key("u1"), {"*": msgspec.json.encode([clock(), 1.5, False])})
    await store.hset(keys.membership_key("u1"), {"old": b"123"}, ttl=TTL - DAY)

    maps = {s: await store.hgetall_entries(f"dmp:{{u1}}:{s}") for s in ("t", "p", "e", "g", "s")}
    rows = profile_rows("u1", maps, LoadContext(clock(), catalog, TTL))
    tier = rows.attributes["tier"]
    assert (tier.value, tier.set_at, tier.expires_at) == ("gold", clock(), clock() + 10 * DAY)
    assert rows.attributes["n"].value == 2**70
    assert [(e.name, e.ts) for e in rows.events] == [("purchase", clock() - DAY)]
    assert rows.syncs["dsp"].partner_uid == "D1"
    assert [(x.kind, x.campaign, x.count) for x in rows.exposures] == [("click", "c9", 1)]
    assert rows.consent["*"].tc_last_updated == 1.5 and rows.expires_at is None  # consent: no TTL
    assert rows.memberships["old"].joined_at == 123.0
    assert rows.memberships["old"].written_at == pytest.approx(clock() - DAY)

    assert await load_profiles(store, engine, context(clock)) == 1
    rule = parse_rule({"all": [{"attribute": "tier", "value": "gold"}, {"exposed": "click"}]})
    assert engine.matching(rule, clock()) == {"u1"}
    assert engine.matching(rule, clock() + DAY) == set()  # the click tally lapsed
    big = parse_rule({"attribute": "n", "op": "gt", "value": 2**70 - 1})
    assert engine.matching(big, clock() + 9 * DAY) == {"u1"}
    assert engine.matching(big, clock() + 10 * DAY) == set()  # the attribute lapsed


def test_settings_bound_memory_and_place_the_files(tmp_path: Path) -> None:
    path = tmp_path / "data" / "analytics.duckdb"
    settings = AnalyticsSettings(str(path), memory_limit_mb=256, threads=1)
    engine = DuckDBEngine(settings)
    assert engine.setting("memory_limit") in ("244.1 MiB", "256.0 MiB", "256 MB")
    assert engine.setting("temp_directory") == f"{path}.tmp"
    assert engine.setting("threads") == "1"
    engine.append(
        [
            profile_rows(
                "u1", {"t": {"a|tier": (b'"gold"', None)}}, LoadContext(0, TraitCatalog(), TTL)
            )
        ]
    )
    engine.close()
    reopened = DuckDBEngine(AnalyticsSettings(str(path), temp_directory=str(tmp_path / "spill")))
    assert reopened.profile_count() == 1  # on disk
    assert reopened.setting("temp_directory") == str(tmp_path / "spill")
    reopened.close()


def test_replace_swaps_a_profiles_rows(engine: DuckDBEngine) -> None:
    ctx = LoadContext(0, TraitCatalog(), TTL)
    gold = profile_rows("u1", {"t": {"a|tier": (b'"gold"', None)}}, ctx)
    engine.append([gold, profile_rows("u2", {"t": {"a|tier": (b'"gold"', None)}}, ctx)])
    engine.replace([profile_rows("u1", {"t": {"a|tier": (b'"silver"', None)}}, ctx)])
    rule = parse_rule({"attribute": "tier", "value": "gold"})
    assert engine.profile_count() == 2
    assert engine.matching(rule, 0) == {"u2"}
