"""The rule→SQL compiler agrees with ``rule.matches()``: random valid rules (``parse_rule`` of
generated tables) over random profiles loaded into a real DuckDB database and into Spark (local
mode, for real), corners included (NaN and infinities, integers beyond 64 bits against floats,
-0.0, booleans against 1 and 0, empty lists, lapsed attributes and events, events exactly at a
window's edge or beyond the per-name cap, lapsed profiles)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession

from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.engine import AnalyticsEngine
from cookiematch.dmp.analytics.rows import (
    AttributeRow,
    EventRow,
    ExposureRow,
    ProfileRows,
    SyncRow,
    snapshot_at,
)
from cookiematch.dmp.analytics.rules_sql import compile_rule
from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.analytics.spark_engine import SparkEngine
from cookiematch.dmp.analytics.spark_sql import SPARK, arguments, ordered_integer
from cookiematch.dmp.segments.rules import OPS, Rule, parse_rule
from cookiematch.errors import RuleError

from .conftest import SPARK_START_TIMEOUT

NOW = 1_700_000_000.0
MAX_EVENTS = 3  # small, so that the cap to the newest timestamps of a name is exercised

ATTRIBUTE_NAMES = ("a", "b", "c")
EVENT_NAMES = ("e1", "e2")
CAMPAIGNS = ("c1", "c2")
PARTNERS = ("p1", "p2")
WITHIN_DAYS = (1, 0.5, 1 / 3)
STRINGS = ("", "x", "gold", "Gold", "é", "a b", "1", "true", "x\x00y")
INTEGERS = (0, 1, -1, 2, 34, 2**53 + 1, 2**63, -(2**63) - 1, 2**64, 10**40, -(10**40), 10**400)
FLOATS = (0.0, -0.0, 0.5, 1.0, -1.5, 34.0, 33.999, 2.0**53, 1e308, -1e308, 1e40, 5e-324)

strings = st.sampled_from(STRINGS)
integers = st.one_of(st.sampled_from(INTEGERS), st.integers(-3, 40))
finite_floats = st.one_of(st.sampled_from(FLOATS), st.floats(-40, 40, allow_nan=False))
scalars = st.one_of(strings, integers, finite_floats, st.booleans())

# what a profile may hold: any scalar, NaN and infinities (the model's float allows them), and
# lists of strings (empty ones too)
values = st.one_of(
    scalars,
    st.sampled_from((float("nan"), float("inf"), float("-inf"))),
    st.lists(strings, max_size=3),
)
expiries = st.sampled_from((None, None, NOW - 1.0, NOW, NOW + 1.0))  # NOW itself: lapsed


def _edges() -> list[float]:
    found = [NOW, NOW - 1.0, NOW + 1.0, NOW - 100 * SECONDS_PER_DAY]
    for days in WITHIN_DAYS:
        since = NOW - days * SECONDS_PER_DAY
        found += [since, since - 1.0, since + 1.0, since - 0.5]
    return found


timestamps = st.one_of(
    st.sampled_from(_edges()), st.sampled_from(_edges()), st.floats(NOW - 2 * SECONDS_PER_DAY, NOW)
)


@st.composite
def profiles(draw: st.DrawFn, uid: str) -> ProfileRows:
    attributes = {
        name: AttributeRow(draw(values), expires_at=draw(expiries))
        for name in draw(st.sets(st.sampled_from(ATTRIBUTE_NAMES)))
    }
    events = tuple(
        EventRow(draw(st.sampled_from(EVENT_NAMES)), draw(timestamps), draw(expiries))
        for _ in range(draw(st.integers(0, 8)))
    )
    exposures = tuple(
        ExposureRow(
            draw(st.sampled_from(("imp", "click", "conv"))),
            draw(st.sampled_from(CAMPAIGNS)),
            draw(st.integers(-1, 4)),
            site=draw(st.sampled_from(("-", "s1"))),
            expires_at=draw(expiries),
        )
        for _ in range(draw(st.integers(0, 3)))
    )
    syncs = {
        partner: SyncRow(f"{partner}-{uid}", expires_at=draw(expiries))
        for partner in draw(st.sets(st.sampled_from(PARTNERS)))
    }
    expires_at = draw(st.sampled_from((None, None, None, NOW, NOW + 5.0)))
    return ProfileRows(uid, expires_at, attributes, events, exposures, syncs)


populations = st.integers(0, 8).flatmap(lambda n: st.tuples(*(profiles(f"u{i}") for i in range(n))))


def _counts(draw: st.DrawFn) -> dict[str, int]:
    at_least = draw(st.integers(0, 4))
    found: dict[str, int] = {}
    if at_least != 1 or draw(st.booleans()):
        found["at_least"] = at_least
    if at_least == 0 or draw(st.booleans()):
        found["at_most"] = at_least + draw(st.integers(0, 3))
    return found


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, object]:
    kind = draw(st.sampled_from(("attribute", "attribute", "event", "exposed", "synced")))
    if kind == "attribute":
        op = draw(st.sampled_from(OPS))
        rule: dict[str, object] = {"attribute": draw(st.sampled_from(ATTRIBUTE_NAMES)), "op": op}
        if op in ("in", "not_in"):
            rule["value"] = draw(st.lists(scalars, max_size=4))
        elif op == "exists":
            rule["value"] = draw(st.booleans())
        elif op in ("gt", "gte", "lt", "lte"):
            rule["value"] = draw(st.one_of(integers, finite_floats))
        else:
            rule["value"] = draw(scalars)
        return rule
    if kind == "event":
        rule = {"event": draw(st.sampled_from(EVENT_NAMES)), **_counts(draw)}
        if draw(st.booleans()):
            rule["within_days"] = draw(st.sampled_from(WITHIN_DAYS))
        return rule
    if kind == "exposed":
        rule = {"exposed": draw(st.sampled_from(("imp", "click", "conv")))}
        if draw(st.booleans()):
            rule["campaign"] = draw(st.sampled_from(CAMPAIGNS))
        if draw(st.booleans()):
            rule["at_least"] = draw(st.integers(1, 5))
        return rule
    return {"synced": draw(st.sampled_from(PARTNERS))}


rule_tables = st.recursive(
    leaves(),
    lambda children: st.one_of(
        st.builds(lambda rules: {"all": rules}, st.lists(children, max_size=3)),
        st.builds(lambda rules: {"any": rules}, st.lists(children, max_size=3)),
        st.builds(lambda rule: {"not": rule}, children),
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def engine() -> Iterator[DuckDBEngine]:
    found = DuckDBEngine(AnalyticsSettings(":memory:"), max_events_per_name=MAX_EVENTS)
    yield found
    found.close()


@pytest.fixture(scope="module")
def spark_engine(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SparkEngine]:
    path = tmp_path_factory.mktemp("rules") / "tables"
    settings = AnalyticsSettings(str(path), engine="spark")
    found = SparkEngine(settings, max_events_per_name=MAX_EVENTS, session=spark)
    yield found
    found.close()


@pytest.fixture(params=["duckdb", "spark"])
def any_engine(request: pytest.FixtureRequest) -> AnalyticsEngine:
    """The DuckDB engine, then the Spark engine (both module-scoped)."""
    found: AnalyticsEngine = request.getfixturevalue(
        "engine" if request.param == "duckdb" else "spark_engine"
    )
    return found


def _expected(rule: Rule, population: tuple[ProfileRows, ...]) -> set[str]:
    found = set()
    for profile in population:
        snapshot = snapshot_at(profile, NOW, MAX_EVENTS)
        if snapshot is not None and rule.matches(snapshot, NOW):
            found.add(profile.dmp_uid)
    return found


def _check_rules(
    engine: AnalyticsEngine, population: tuple[ProfileRows, ...], tables: tuple[object, ...]
) -> None:
    engine.clear()
    engine.append(population)
    for table in tables:
        try:
            rule = parse_rule(table)
        except RuleError as exc:  # the generator writes valid rules only
            raise AssertionError(f"generated an invalid rule {table!r}: {exc}") from exc
        assert engine.matching(rule, NOW) == _expected(rule, population), table


RANDOM_TABLES = st.tuples(leaves(), leaves(), leaves(), rule_tables, rule_tables, rule_tables)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(population=populations, tables=RANDOM_TABLES)
def test_sql_selects_what_the_rule_matches(
    engine: DuckDBEngine, population: tuple[ProfileRows, ...], tables: tuple[object, ...]
) -> None:
    _check_rules(engine, population, tables)


@pytest.mark.timeout(SPARK_START_TIMEOUT + 600)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(population=populations, tables=RANDOM_TABLES)
def test_spark_sql_selects_what_the_rule_matches(
    spark_engine: SparkEngine, population: tuple[ProfileRows, ...], tables: tuple[object, ...]
) -> None:
    """The same property on Spark, fewer examples (a Spark query takes tenths of a second)."""
    _check_rules(spark_engine, population, tables)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"attribute": "n", "value": 1}, {"int1", "float1"}),  # 1 == 1.0; true is not 1
        ({"attribute": "n", "value": True}, {"true"}),
        ({"attribute": "n", "op": "ne", "value": 1}, {"true", "nan", "big", "list", "none"}),
        ({"attribute": "n", "op": "gt", "value": 2**64 - 1}, {"big"}),  # 2**64 > 2.0**64 - 1
        ({"attribute": "n", "op": "gte", "value": 18446744073709551615.0}, {"big"}),
        ({"attribute": "n", "op": "lt", "value": 1e308}, {"int1", "float1", "big"}),  # not NaN
        ({"attribute": "n", "op": "in", "value": ["x", 1.0]}, {"int1", "float1", "list"}),
        ({"attribute": "n", "op": "not_in", "value": []}, {"int1", "float1", "true", "nan",
                                                          "big", "list", "none"}),
        ({"attribute": "n", "op": "exists", "value": False}, {"none"}),
        # "WHERE (TRUE)": Spark read a bare table's WHERE as its alias, (TRUE) as a column's
        ({"all": [{"all": []}]}, {"int1", "float1", "true", "nan", "big", "list", "none"}),
        ({"any": [{"any": []}]}, set()),
    ],
)  # fmt: skip
@pytest.mark.timeout(SPARK_START_TIMEOUT)
def test_corners(any_engine: AnalyticsEngine, table: dict[str, object], expected: set[str]) -> None:
    values: dict[str, object] = {
        "int1": 1,
        "float1": 1.0,
        "true": True,
        "nan": float("nan"),
        "big": 2**64,  # above every int64, not a double's neighbour
        "list": ["x", "y"],
    }
    population = (
        *(
            ProfileRows(uid, attributes={"n": AttributeRow(value)})  # type: ignore[arg-type]
            for uid, value in values.items()
        ),
        ProfileRows("none"),
    )
    any_engine.clear()
    any_engine.append(population)
    rule = parse_rule(table)
    assert any_engine.matching(rule, NOW) == expected == _expected(rule, population)


def _events(*stamps: float, expires_at: float | None = None) -> ProfileRows:
    return ProfileRows(
        f"u{len(stamps)}-{expires_at}", events=tuple(EventRow("e", t, expires_at) for t in stamps)
    )


@pytest.mark.parametrize(
    ("table", "profile", "holds"),
    [
        ({"event": "e", "within_days": 1}, _events(NOW - SECONDS_PER_DAY), True),  # edge: in
        ({"event": "e", "within_days": 1}, _events(NOW - SECONDS_PER_DAY - 1), False),
        ({"event": "e", "within_days": 1}, _events(NOW), True),  # the other edge
        ({"event": "e", "within_days": 1}, _events(NOW + 1), False),  # the future
        ({"event": "e"}, _events(NOW + 1), True),  # no window: any time
        ({"event": "e", "at_least": 4}, _events(1, 2, 3, 4), False),  # the newest 3 only
        ({"event": "e", "within_days": 1}, _events(NOW - 1, NOW + 1, NOW + 2, NOW + 3), False),
        ({"event": "e", "within_days": 1}, _events(NOW - 1, expires_at=NOW), False),  # lapsed
        ({"event": "e", "at_least": 0, "at_most": 0}, _events(NOW, expires_at=NOW), True),
        ({"event": "e", "at_least": 2}, _events(5, 5, 5), False),  # one timestamp, once
    ],
)
@pytest.mark.timeout(SPARK_START_TIMEOUT)
def test_event_corners(
    any_engine: AnalyticsEngine, table: dict[str, object], profile: ProfileRows, holds: bool
) -> None:
    any_engine.clear()
    any_engine.append([profile])
    rule = parse_rule(table)
    expected = {profile.dmp_uid} if holds else set()
    assert any_engine.matching(rule, NOW) == expected == _expected(rule, (profile,))


def test_values_are_bound_never_spliced() -> None:
    rule = parse_rule({"attribute": "name'; DROP TABLE profiles; --", "value": "x' OR '1'='1"})
    query = compile_rule(rule, NOW)
    assert "DROP" not in query.sql and "'1'='1" not in query.sql
    assert "name'; DROP TABLE profiles; --" in query.params


def test_spark_keys_order_integers_as_integers() -> None:
    numbers = sorted({*INTEGERS, *range(-12, 12), 99, 100, -99, -100, 10**399, -(10**399)})
    keys = [ordered_integer(n) for n in numbers]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_spark_dialect_binds_by_name() -> None:
    rule = parse_rule({"all": [{"attribute": "n", "op": "gte", "value": 2**64}, {"synced": "p"}]})
    query = compile_rule(rule, NOW, SPARK)
    assert ":p0" in query.sql and "$1" not in query.sql
    assert arguments(query.params)["p0"] == "n"
    assert ordered_integer(2**64) in query.params
