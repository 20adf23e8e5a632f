"""Staged trait updates applied in SQL (``staged_sql.py``) against the per-profile merge
(``staged.merge_in_python``, what Spark runs), on random held profiles and random sequences of
updates and erasures (hypothesis; two DuckDB files on disk): the engines hold the same rows,
each value of the same type, every lapse the same; applying the last batch again changes
nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.rows import AttributeRow, EventRow, ProfileRows, SyncRow
from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.analytics.staged import merge_in_python
from cookiematch.dmp.traits.schema import TraitCatalog, TraitDef, TraitKind
from cookiematch.dmp.traits.staging import StagedUpdate

DAY = 86_400.0
NOW = 1_800_000_000.0
CATALOG = TraitCatalog(
    traits={
        "age": TraitDef("age", TraitKind.NUMBER, 10 * DAY),
        "buy": TraitDef("buy", TraitKind.EVENT, 3 * DAY),
    },
    attribute_ttl=30 * DAY,
    event_ttl=7 * DAY,
    max_events_per_name=3,
)
UIDS = ["u1", "u2", "u3", "u4"]
NAMES = ["age", "tier", "tags", "flag"]
EVENT_NAMES = ["buy", "open"]

values = st.one_of(
    st.integers(-(10**30), 10**30),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=4),
    st.lists(st.text(max_size=3), max_size=3),
)
stamps = st.integers(int(NOW - 20 * DAY), int(NOW)).map(lambda ts: ts - ts % 3600)
"""Event times on the hour, few of them: duplicates and names over the cap are common."""
times = st.floats(NOW - 15 * DAY, NOW)


@st.composite
def updates(draw: st.DrawFn) -> StagedUpdate:
    uid = draw(st.sampled_from(UIDS))
    if draw(st.integers(0, 9)) == 0:
        return StagedUpdate(uid, "", draw(times), {}, (), (), erase=True)
    return StagedUpdate(
        uid,
        "crm",
        draw(times),
        draw(st.dictionaries(st.sampled_from(NAMES), values, max_size=3)),
        tuple(draw(st.lists(st.sampled_from(NAMES), max_size=2))),
        tuple(draw(st.lists(st.tuples(st.sampled_from(EVENT_NAMES), stamps), max_size=4))),
    )


@st.composite
def held_profiles(draw: st.DrawFn) -> list[ProfileRows]:
    """Profiles as an engine holds them: each name's events within the cap, every trait
    lapsing, the profile lapsing with the last of its data or never."""
    found = []
    for uid in draw(st.lists(st.sampled_from(UIDS), unique=True, max_size=3)):
        attributes = {
            name: AttributeRow(value, at, at + draw(st.sampled_from([DAY, 40 * DAY])))
            for name, (value, at) in draw(
                st.dictionaries(st.sampled_from(NAMES), st.tuples(values, times), max_size=3)
            ).items()
        }
        events = tuple(
            EventRow(name, float(ts), CATALOG.event_expiry(name, ts))
            for name in EVENT_NAMES
            for ts in draw(st.lists(stamps, unique=True, max_size=3))
        )
        lapses = [row.expires_at or 0.0 for row in (*attributes.values(), *events)]
        expires_at = draw(st.sampled_from([None, max(lapses, default=NOW) + DAY]))
        syncs = {"dsp": SyncRow("D-" + uid, NOW - DAY, NOW + DAY)}
        found.append(ProfileRows(uid, expires_at, attributes, events, syncs=syncs))
    return found


def typed(profiles: list[ProfileRows]) -> list[Any]:
    """Profiles with each value's type beside it (``1 == 1.0 == True`` in Python); those the
    per-profile merge holds with no data (a browser it did not know, given no trait) left
    out: SQL gives them no row."""
    return [
        (
            p.dmp_uid, p.expires_at,
            {n: (type(r.value).__name__, r.value, r.set_at, r.expires_at)
             for n, r in p.attributes.items()},
            p.events, p.syncs,
        )
        for p in profiles
        if not (p.expires_at == 0.0 and not p.attributes and not p.events and not p.syncs)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBEngine, ...]]:
    root: Path = tmp_path_factory.mktemp("staged-sql")
    pair = tuple(
        DuckDBEngine(AnalyticsSettings(str(root / f"{name}.duckdb")), max_events_per_name=3)
        for name in ("sql", "python")
    )
    yield pair
    for engine in pair:
        engine.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    held=held_profiles(),
    batches=st.lists(st.lists(updates(), min_size=1, max_size=8), min_size=1, max_size=4),
)
def test_the_sql_apply_holds_what_the_per_profile_merge_holds(
    engines: tuple[DuckDBEngine, DuckDBEngine],
    held: list[ProfileRows],
    batches: list[list[StagedUpdate]],
) -> None:
    sql, python = engines
    for engine in engines:
        engine.clear()
        engine.append(held)
    files = [msgspec.json.encode(batch) for batch in batches]
    for cut in range(0, len(files), 2):  # two files at a time, as a job takes them
        sql.merge_staged(files[cut : cut + 2], CATALOG)
        merge_in_python(python, files[cut : cut + 2], CATALOG)
    assert typed(sql.profiles(UIDS)) == typed(python.profiles(UIDS))
    before = sql.profiles(UIDS)
    sql.merge_staged(files[-1:], CATALOG)  # a job cut short before deleting its files
    assert sql.profiles(UIDS) == before


def test_an_erasure_leaves_out_what_was_staged_before_it(
    engines: tuple[DuckDBEngine, DuckDBEngine],
) -> None:
    sql, _ = engines
    sql.clear()
    sql.append([ProfileRows("u1", None, {"tier": AttributeRow("gold", NOW, NOW + DAY)})])
    staged = [
        [StagedUpdate("u1", "crm", NOW, {"age": 30}, (), (("buy", int(NOW)),))],
        [StagedUpdate("u1", "", NOW + 1, {}, (), (), erase=True)],
        [
            StagedUpdate("u1", "crm", NOW + 2, {"flag": True}, (), ()),
            StagedUpdate("u2", "", NOW + 3, {}, (), (), erase=True),  # not known: no row
        ],
    ]
    sql.merge_staged([msgspec.json.encode(updates) for updates in staged], CATALOG)
    (profile,) = sql.profiles(["u1", "u2"])
    assert profile.expires_at is None  # it never lapsed: it still does not
    assert profile.attributes == {"flag": AttributeRow(True, NOW + 2, NOW + 2 + 30 * DAY)}
    assert profile.events == ()


def test_an_object_naming_an_attribute_twice_keeps_the_last(
    engines: tuple[DuckDBEngine, DuckDBEngine],
) -> None:
    """Never written so, but decoded (the last wins): the SQL apply keeps the last too."""
    body = b'[["u1","crm",1800000000.0,{"tier":"a","age":3,"tier":"b"},[],[]]]'
    for engine in engines:
        engine.clear()
    sql, python = engines
    sql.merge_staged([body], CATALOG)
    merge_in_python(python, [body], CATALOG)
    assert typed(sql.profiles(UIDS)) == typed(python.profiles(UIDS))
    assert sql.profiles(["u1"])[0].attributes["tier"].value == "b"
