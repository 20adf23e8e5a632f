"""The analytics engine owns the profiles' traits (real stores, DuckDB files on disk): online
trait writes are staged and applied by the next engine job with the key-value store path's
semantics; a refresh of a browser's online parts keeps its traits (ingested in SQL or staged);
an erasure staged drops the traits staged before it; the profile look-up reads the engine and
answers 503 while another job keeps it."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.load import load_profiles
from cookiematch.dmp.analytics.lookup import EngineTraits
from cookiematch.dmp.analytics.rows import snapshot_at
from cookiematch.dmp.analytics.runs import EngineRuns
from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.analytics.staged import apply_staged, apply_updates
from cookiematch.dmp.ingest import build_ingestor
from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.segment_exports import SegmentExports
from cookiematch.dmp.segments.membership import Memberships
from cookiematch.dmp.subjects import DmpSubjects
from cookiematch.dmp.traits.schema import TraitCatalog, TraitDef, TraitKind
from cookiematch.dmp.traits.staging import StagedUpdate, TraitStaging
from cookiematch.dmp.traits.writes import ProfileUpdate, TraitStore
from cookiematch.errors import TryLater
from cookiematch.protocol.cookies import format_browser_id
from cookiematch.storage import Store

from ..helpers import FakeClock
from .test_engine_store import DAY, SEGMENTS, TTL, context, populate, uid_of

CATALOG = TraitCatalog(
    traits={"age": TraitDef("age", TraitKind.NUMBER, 10 * DAY)}, max_events_per_name=3
)


def settings(tmp_path: Path) -> AnalyticsSettings:
    return AnalyticsSettings(str(tmp_path / "analytics" / "dmp.duckdb"))


def runs(store: Store, clock: FakeClock, tmp_path: Path, catalog: TraitCatalog) -> EngineRuns:
    found = settings(tmp_path)
    return EngineRuns(
        lambda: DuckDBEngine(found, max_events_per_name=catalog.max_events_per_name), store,
        Memberships(store, TTL), catalog, holder="w1", clock=clock,
        staging=TraitStaging(found.staging_directory),
    )  # fmt: skip


def random_updates(rng: random.Random, now: float) -> list[dict[str, ProfileUpdate]]:
    """Batches of updates as records make them: sets, deletes, events (duplicates, over the
    cap, some already lapsed), over a few browsers."""
    batches = []
    for _ in range(12):
        batch: dict[str, ProfileUpdate] = {}
        for uid in rng.sample([uid_of(i) for i in range(8)], 4):
            update = ProfileUpdate("crm")
            attributes = {
                name: rng.choice([None, 1, 2.5, "x", True, ["a", "b"], 10**30])
                for name in rng.sample(["age", "tier", "tags", "flag"], rng.randint(0, 3))
            }
            events = {
                (rng.choice(["buy", "open"]), int(now - rng.choice([0, 1, 5, 20, 200]) * DAY))
                for _ in range(rng.randint(0, 5))
            }
            remove = rng.sample(["tier", "flag"], rng.randint(0, 1))
            update.merge(attributes, remove, events)
            batch[uid] = update
        batches.append(batch)
    return batches


async def test_staged_updates_give_the_store_paths_profiles(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    """The same updates written to the store's ``t`` maps and staged for the engine: the
    engine then holds what a load of the store holds, as any rule sees it at any time."""
    staging = TraitStaging(tmp_path / "staging")
    stored = TraitStore(store, CATALOG, clock=clock)
    staged = TraitStore(store, CATALOG, clock=clock, staging=staging)
    expired = [0, 0]
    for batch in random_updates(random.Random(7), clock()):
        expired[0] += await stored.apply(batch)
        expired[1] += await staged.apply(batch)
        clock.now += 30
    assert expired[0] == expired[1] > 0
    assert len(staging.files()) == 12
    owned = DuckDBEngine(AnalyticsSettings(str(tmp_path / "owned.duckdb")), max_events_per_name=3)
    loaded = DuckDBEngine(AnalyticsSettings(str(tmp_path / "loaded.duckdb")), max_events_per_name=3)
    again = TraitStaging(tmp_path / "again")
    again.directory.mkdir()
    for path in staging.files():
        shutil.copy(path, again.directory / path.name)
    try:
        assert await apply_staged(staging, owned, CATALOG) == 48
        assert staging.files() == []  # applied: deleted
        ctx = context(clock)
        await load_profiles(store, loaded, type(ctx)(ctx.now, CATALOG, TTL))
        uids = [uid_of(i) for i in range(8)]
        mine, theirs = owned.profiles(uids), loaded.profiles(uids)
        assert [p.dmp_uid for p in mine] == [p.dmp_uid for p in theirs]
        for later in (0, 1, 9, 11, 30, 100):
            at = clock() + later * DAY
            assert [snapshot_at(p, at, 3) for p in mine] == [snapshot_at(p, at, 3) for p in theirs]
        for a, b in zip(mine, theirs, strict=True):
            assert {n: (r.value, r.expires_at) for n, r in a.attributes.items()} == {
                n: (r.value, r.expires_at) for n, r in b.attributes.items()
            }
        # the same files applied again (a job cut short before deleting them) change nothing
        before = owned.profiles(uids)
        assert await apply_staged(again, owned, CATALOG) == 48
        assert owned.profiles(uids) == before
    finally:
        owned.close()
        loaded.close()


def test_an_erasure_drops_the_traits_and_the_updates_staged_before_it() -> None:
    def update(at: float, **attributes: str) -> StagedUpdate:
        return StagedUpdate("u", "crm", at, dict(attributes), (), (("buy", int(at)),))

    erased = StagedUpdate("u", "", 3.0, {}, (), (), erase=True)
    found = apply_updates(None, "u", [update(1.0, a="1"), update(2.0, b="2"), erased], CATALOG)
    assert (found.attributes, found.events) == ({}, ())
    after = apply_updates(found, "u", [update(4.0, c="3")], CATALOG)
    assert list(after.attributes) == ["c"] and [e.ts for e in after.events] == [4.0]


async def test_a_refresh_keeps_the_traits_the_engine_owns(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    """Traits ingested in SQL and staged survive a later online write of the same browser
    (its online parts re-read from the store); the look-up and the segments see them."""
    await populate(store, clock, 10)
    engine_runs = runs(store, clock, tmp_path, TraitCatalog())
    clock.now += 600
    await engine_runs.recompute(SEGMENTS)  # the first: a full load
    matches = MatchTable(store, TTL)
    await matches.record("crm", uid_of(1), "C-1", clock())
    data = tmp_path / "crm.jsonl"
    data.write_text('{"uid": "C-1", "attributes": {"tags": ["shoes"], "tier": "ruby"}}\n')
    traits = TraitStore(store, TraitCatalog(), clock=clock, staging=engine_runs.staging)
    ingestor = build_ingestor(store, traits, clock=clock)
    report = await engine_runs.ingest("crm", [data], ingestor.pending)
    assert (report.records, report.accepted) == (1, 1)
    clock.now += 60
    staged = ProfileUpdate("crm")
    staged.merge({"age": 20}, ("tier",), ())
    await traits.apply({uid_of(1): staged})
    await matches.record("dsp", uid_of(1), "D-new", clock())  # its online parts change
    clock.now += 60
    await engine_runs.recompute(SEGMENTS)
    attributes, _ = await EngineTraits(engine_runs, clock=clock).traits(uid_of(1))
    assert attributes["tags"] == ["shoes"] and attributes["age"] == 20
    assert "tier" not in attributes
    joined = await Memberships(store, TTL).of(uid_of(1))
    assert "shoes" in joined and "young_unsynced" not in joined  # synced to dsp now


async def test_the_look_up_hides_an_erased_browser_at_once(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    engine_runs = runs(store, clock, tmp_path, TraitCatalog())
    uid = format_browser_id(bytes(range(16)))
    matches = MatchTable(store, TTL)
    await matches.record("crm", uid, "C-1", clock())
    traits = TraitStore(store, TraitCatalog(), clock=clock, staging=engine_runs.staging)
    update = ProfileUpdate("crm")
    update.merge({"tier": "gold"}, (), ())
    await traits.apply({uid: update})
    look_up = EngineTraits(engine_runs, clock=clock)
    assert (await look_up.traits(uid))[0] == {"tier": "gold"}  # staged: shown at once
    await traits.apply({uid: update})  # staged again, not applied yet when erased
    exports = SegmentExports(store, [], [])
    subjects = DmpSubjects(
        store, matches, exports, ["crm"], clock=clock, staging=engine_runs.staging,
        engine_traits=engine_runs.traits,
    )  # fmt: skip
    assert [r.field for r in (await subjects.access(uid)).records if r.kind == "trait"] == [
        "a|tier"
    ]
    await subjects.erase(uid)
    assert await look_up.traits(uid) == ({}, {})
    assert (await subjects.access(uid)).records == []
    async with engine_runs.engine() as engine:
        assert engine.profiles([uid]) == []


async def test_the_look_up_answers_503_while_another_job_keeps_the_engine(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    engine_runs = runs(store, clock, tmp_path, TraitCatalog())
    async with engine_runs.engine():
        with pytest.raises(TryLater) as caught:
            await EngineTraits(engine_runs, clock=clock).traits("u")
    assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "5"}
    assert await EngineTraits(engine_runs, clock=clock).traits("u") == ({}, {})  # released


async def test_the_look_up_goes_on_past_a_staged_file_that_does_not_decode(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    engine_runs = runs(store, clock, tmp_path, TraitCatalog())
    assert engine_runs.staging is not None
    uid = format_browser_id(bytes(range(16)))
    traits = TraitStore(store, TraitCatalog(), clock=clock, staging=engine_runs.staging)
    update = ProfileUpdate("crm")
    update.merge({"tier": "gold"}, (), ())
    await traits.apply({uid: update})
    torn = engine_runs.staging.directory / "00000000000000000001-1-aaaaaaaa.stg"
    torn.write_bytes(b"[[")
    look_up = EngineTraits(engine_runs, clock=clock)
    assert (await look_up.traits(uid))[0] == {"tier": "gold"}
    assert (engine_runs.staging.directory / "bad" / torn.name).exists()
