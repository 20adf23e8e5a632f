"""The Spark engine (local mode, for real) against the DuckDB engine on the same data: profiles
written by the DMP's own writers to a real SQLite store, loaded into both; the same membership
diffs (joins, leaves, rewrites, batch by batch), the same sizes and the same exact overlap, over
recomputes as time passes; Spark's theta sketches hash as the DataSketches library does. Its
tables are Parquet files that outlive the engine, and a rewrite cut short between its two
renames is finished or undone when the engine next opens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import datasketches
import msgspec
import pytest
from pyspark.sql import SparkSession

from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.engine import AnalyticsEngine
from cookiematch.dmp.analytics.engines import open_engine
from cookiematch.dmp.analytics.load import LoadContext, load_profiles, profile_rows
from cookiematch.dmp.analytics.rows import AttributeRow, MembershipRow, ProfileRows
from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.analytics.spark_engine import SparkEngine
from cookiematch.dmp.analytics.tables import MEMBERSHIPS
from cookiematch.dmp.overlap import POPULATION, SketchAudiences, overlaps, segment_audience
from cookiematch.dmp.segments import parse_rule
from cookiematch.dmp.segments.membership import Change
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.dmp.traits.staging import StagedUpdate
from cookiematch.storage import Store

from ..helpers import FakeClock
from .conftest import SPARK_START_TIMEOUT
from .test_engine_store import DAY, SEGMENTS, populate, uid_of

pytestmark = pytest.mark.timeout(SPARK_START_TIMEOUT)


@pytest.fixture
def spark_engine(spark: SparkSession, tmp_path: Path) -> Iterator[SparkEngine]:
    found = SparkEngine(AnalyticsSettings(str(tmp_path / "tables"), engine="spark"), session=spark)
    yield found
    found.close()


@pytest.fixture
def duckdb_engine(tmp_path: Path) -> Iterator[DuckDBEngine]:
    found = DuckDBEngine(AnalyticsSettings(str(tmp_path / "dmp.duckdb")))
    yield found
    found.close()


def _diff(engine: AnalyticsEngine, now: float, refresh_before: float) -> tuple[object, ...]:
    """A recompute's figures and every change, then held as written."""
    diff = engine.diff_memberships(SEGMENTS, now, refresh_before)
    changes: list[Change] = [c for batch in engine.changes(7) for c in batch]
    engine.commit_memberships(now)
    return diff, changes


def _overlap(engine: AnalyticsEngine, now: float) -> list[tuple[object, ...]]:
    return [
        (p.a, p.b, p.size_a.value, p.size_b.value, p.both.value, p.union.value, p.population.value)
        for p in engine.overlap([s.id for s in SEGMENTS], now)
    ]


async def test_spark_finds_what_duckdb_finds(
    store: Store, clock: FakeClock, spark_engine: SparkEngine, duckdb_engine: DuckDBEngine
) -> None:
    await populate(store, clock, 60)
    ttl = 40 * DAY  # memberships due for a rewrite after 20 days
    context = LoadContext(clock(), TraitCatalog(), ttl)
    assert await load_profiles(store, spark_engine, context, batch=13) == 60
    assert await load_profiles(store, duckdb_engine, context) == 60
    assert spark_engine.profile_count() == duckdb_engine.profile_count() == 60
    # a browser's rows read back (the profile look-up, the refresh keeping traits): the same
    uids = [uid_of(i) for i in (0, 1, 7, 59)] + ["unknown"]
    assert spark_engine.profiles(uids) == duckdb_engine.profiles(uids)
    assert len(duckdb_engine.profiles(uids)) == 4

    for rule in [s.rule for s in SEGMENTS]:
        assert spark_engine.matching(rule, clock()) == duckdb_engine.matching(rule, clock())
    for step in (0.0, 0.0, 25 * DAY, 35 * DAY):  # first: every membership new; then none
        clock.now += step
        refresh_before = clock() - ttl / 2
        spark, duck = (
            _diff(spark_engine, clock(), refresh_before),
            _diff(duckdb_engine, clock(), refresh_before),
        )
        assert spark == duck, step
        assert _overlap(spark_engine, clock()) == _overlap(duckdb_engine, clock())
    diff = spark[0]
    assert diff.left > 0 or diff.refreshed > 0  # type: ignore[attr-defined]

    # Spark's theta sketches are DataSketches' own: the same hashes as the Python library's
    lg_k = 5  # 32 hashes (the least): the population is already estimated
    names = [s.id for s in SEGMENTS]
    built = spark_engine.sketches(names, clock(), lg_k)
    expected = SketchAudiences(lg_k)
    held = duckdb_engine.connection.execute(f"SELECT profile, segment FROM {MEMBERSHIPS}")
    for uid, segment in held.fetchall():
        expected.add(uid, [segment_audience(segment)])
    live = duckdb_engine.connection.execute(
        "SELECT id FROM profiles WHERE expires_at IS NULL OR expires_at > $1", [clock()]
    )
    for (uid,) in live.fetchall():
        expected.add(uid, [])  # the population
    assert built.names() == expected.names() != []  # the segments with members
    for name in [*built.names(), POPULATION]:
        assert _trimmed(built, name, lg_k) == _trimmed(expected, name, lg_k), name
    exact = {(p.a, p.b): p.both.value for p in duckdb_engine.overlap(names, clock())}
    for pair in overlaps(built, built.names()):
        assert pair.both.low <= exact[(pair.a[8:], pair.b[8:])] <= pair.both.high


def _trimmed(audiences: SketchAudiences, name: str, lg_k: int) -> tuple[float, int]:
    """A sketch cut to its nominal size (what a union gives): estimate, hashes kept."""
    union = datasketches.theta_union(lg_k)
    union.update(audiences._sketch(name))
    result = union.get_result()
    return result.get_estimate(), result.num_retained


def test_tables_outlive_the_engine(spark: SparkSession, tmp_path: Path) -> None:
    settings = AnalyticsSettings(str(tmp_path / "tables"), engine="spark")
    engine = SparkEngine(settings, session=spark)
    context = LoadContext(0, TraitCatalog(), 40 * DAY)
    engine.append(
        [profile_rows(f"u{i}", {"t": {"a|n": (b"%d" % i, None)}}, context) for i in (1, 2)]
    )
    engine.replace([ProfileRows("u1", attributes={"n": AttributeRow(2**70)})])
    engine.close()

    # a rewrite cut short: the old table moved aside, the new one complete
    staged = tmp_path / "tables" / f".{MEMBERSHIPS}.next"
    engine = SparkEngine(settings, session=spark)
    held = ProfileRows("u2", memberships={"s": MembershipRow(5.0, 6.0)})
    engine.replace([held])
    engine.session.createDataFrame(
        [("u9", "s", 1.0, 2.0)], engine._read(MEMBERSHIPS).schema
    ).write.parquet(str(staged))
    (tmp_path / "tables" / MEMBERSHIPS).rename(tmp_path / "tables" / f".{MEMBERSHIPS}.old")
    engine.close()

    reopened = SparkEngine(settings, session=spark)
    assert reopened.profile_count() == 2
    big = parse_rule({"attribute": "n", "op": "gt", "value": 2**70 - 1})
    assert reopened.matching(big, 0) == {"u1"}
    assert [(p.a, p.size_a.value) for p in reopened.overlap(["s", "t"], 0)] == [("s", 1.0)]
    assert reopened.session.table(MEMBERSHIPS).collect()[0][0] == "u9"  # the swap finished
    reopened.close()


def test_the_configured_engine_opens(spark: SparkSession, tmp_path: Path) -> None:
    duck = open_engine(AnalyticsSettings(str(tmp_path / "a.duckdb")))
    assert isinstance(duck, DuckDBEngine)
    duck.close()
    settings = AnalyticsSettings(str(tmp_path / "tables"), engine="spark")
    found = open_engine(settings)  # on the process's running session
    assert isinstance(found, SparkEngine)
    found.append([ProfileRows("u1")])
    assert found.profile_count() == 1
    found.close()
    assert not spark.sparkContext._jsc.sc().isStopped()  # the context serves the process


def test_both_engines_remove_profiles_and_keep_checkpoints(
    spark_engine: SparkEngine, duckdb_engine: DuckDBEngine, tmp_path: Path
) -> None:
    context = LoadContext(0, TraitCatalog(), 40 * DAY)
    rows = [profile_rows(f"u{i}", {"t": {"a|n": (b"%d" % i, None)}}, context) for i in range(4)]
    rule = parse_rule({"attribute": "n", "op": "gte", "value": 0})
    for engine in (spark_engine, duckdb_engine):
        engine.append(rows)
        engine.remove(["u1", "u3", "nobody"])
        assert engine.matching(rule, 0) == {"u0", "u2"}
        assert engine.profile_count() == 2
        assert sorted(engine.profile_ids()) == ["u0", "u2"]
        assert engine.checkpoint("loaded") is None
        engine.set_checkpoint("loaded", 12.5)
        engine.set_checkpoint("loaded", 13.5)
        assert engine.checkpoint("loaded") == 13.5
    reopened = SparkEngine(AnalyticsSettings(str(tmp_path / "tables"), engine="spark"),
                           session=spark_engine.session)  # fmt: skip
    assert reopened.checkpoint("loaded") == 13.5
    reopened.close()


def test_spark_applies_staged_updates_as_duckdb_does(
    spark_engine: SparkEngine, duckdb_engine: DuckDBEngine
) -> None:
    """Spark merges staged files per profile (``staged.merge_in_python``), DuckDB in SQL:
    the same rows held after (an erasure, a removal, events over the cap and repeated)."""
    now = 1_800_000_000.0
    catalog = TraitCatalog(max_events_per_name=2)
    held = [
        ProfileRows("a", None, {"tier": AttributeRow("gold", now - DAY, now + DAY)}),
        ProfileRows("b", now + 5 * DAY, {"tier": AttributeRow("red", now - DAY, now + DAY)}),
    ]
    files = [
        msgspec.json.encode(updates)
        for updates in (
            [
                StagedUpdate("a", "crm", now, {"age": 10**30, "tags": ["x"]}, ("tier",), ()),
                StagedUpdate("b", "crm", now, {"n": 2.5}, (), (("buy", 1), ("buy", 2))),
            ],
            [
                StagedUpdate("b", "", now + 1, {}, (), (), erase=True),
                StagedUpdate("b", "crm", now + 2, {"ok": True}, (), (("buy", 3), ("buy", 4))),
                StagedUpdate("c", "crm", now + 3, {}, (), (("buy", 5), ("buy", 6), ("buy", 5))),
                StagedUpdate("b", "crm", now + 4, {}, (), (("buy", 5), ("buy", 3))),
            ],
        )
    ]
    for engine in (spark_engine, duckdb_engine):
        engine.append(held)
        engine.merge_staged(files, catalog)
    assert spark_engine.profiles(["a", "b", "c"]) == duckdb_engine.profiles(["a", "b", "c"])
    assert [e.ts for e in duckdb_engine.profiles(["b"])[0].events] == [4.0, 5.0]
