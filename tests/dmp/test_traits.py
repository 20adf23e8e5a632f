"""Traits on a real SQLite store: per-trait TTLs, set semantics, event bounds, snapshots."""

from __future__ import annotations

import random
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.dmp import keys
from cookiematch.dmp.service import DmpService
from cookiematch.dmp.traits.fields import attribute_field, decode_traits, event_field
from cookiematch.dmp.traits.reader import ProfileReader
from cookiematch.dmp.traits.schema import TraitCatalog, TraitDef, TraitKind
from cookiematch.dmp.traits.writes import ProfileUpdate, TraitStore
from cookiematch.storage import Store

from .helpers import NOW, FakeClock

CATALOG = TraitCatalog(
    traits={
        "tier": TraitDef("tier", TraitKind.STRING, 10 * DAY),
        "purchase": TraitDef("purchase", TraitKind.EVENT, 30 * DAY),
    },
    attribute_ttl=2 * DAY,
    event_ttl=5 * DAY,
    max_events_per_name=3,
)


def update(**kwargs: object) -> ProfileUpdate:
    found = ProfileUpdate("crm")
    found.merge(
        kwargs.get("attributes", {}),  # type: ignore[arg-type]
        kwargs.get("remove", ()),  # type: ignore[arg-type]
        kwargs.get("events", ()),  # type: ignore[arg-type]
    )
    return found


async def test_attributes_live_their_trait_ttl(store: Store, clock: FakeClock) -> None:
    traits = TraitStore(store, CATALOG, clock=clock)
    reader = ProfileReader(store, max_events_per_name=3, clock=clock)
    await traits.apply({"u1": update(attributes={"tier": "gold", "age": 31})})
    assert (await reader.snapshot("u1")).attributes == {"age": 31, "tier": "gold"}
    clock.now += 3 * DAY  # past the default (2 days), within tier's 10 days
    assert (await reader.snapshot("u1")).attributes == {"tier": "gold"}
    clock.now += 8 * DAY
    assert (await reader.snapshot("u1")).attributes == {}


async def test_set_semantics_and_removal(store: Store, clock: FakeClock) -> None:
    traits = TraitStore(store, CATALOG, clock=clock)
    reader = ProfileReader(store, clock=clock)
    await traits.apply({"u1": update(attributes={"tier": "gold", "x": 1, "y": [1]})})
    await traits.apply({"u1": update(attributes={"tier": "silver", "x": None}, remove=["y"])})
    assert (await reader.snapshot("u1")).attributes == {"tier": "silver"}


def test_merge_keeps_the_order_of_records() -> None:
    found = ProfileUpdate("crm")
    found.merge({"a": 1}, [], [])
    found.merge({}, ["a"], [])
    found.merge({"b": 1}, [], [])
    found.merge({"b": None}, [], [])
    found.merge({"b": 2}, [], [])
    assert found.attributes == {"b": 2}
    assert found.remove == {"a"}


_NAMES = st.sampled_from(["a", "b", "c"])
_RECORDS = st.lists(
    st.tuples(
        st.dictionaries(_NAMES, st.one_of(st.none(), st.integers(0, 3))),
        st.lists(_NAMES, max_size=2),
        st.lists(st.tuples(st.just("e"), st.integers(0, 3)), max_size=2),
    ),
    max_size=8,
)


@given(_RECORDS)
def test_merging_records_equals_applying_them_one_by_one(
    records: list[tuple[dict[str, int | None], list[str], list[tuple[str, int]]]],
) -> None:
    merged = ProfileUpdate("crm")
    state: dict[str, int | None] = {}  # name -> value, None: removed
    events: set[tuple[str, int]] = set()
    for attributes, remove, new_events in records:
        merged.merge(attributes, remove, new_events)
        for name in remove:
            state[name] = None
        state.update(attributes)
        events.update(new_events)
    assert merged.attributes == {n: v for n, v in state.items() if v is not None}
    assert merged.remove == {n for n, v in state.items() if v is None}
    assert merged.events == events


async def test_events_dedup_bound_and_expire_from_their_time(
    store: Store, clock: FakeClock
) -> None:
    traits = TraitStore(store, CATALOG, clock=clock)
    reader = ProfileReader(store, max_events_per_name=3, clock=clock)
    now = int(NOW)
    stamps = [now - 40 * DAY, now - 4 * DAY, now - 3 * DAY, now - 2 * DAY, now - DAY]
    events = [("purchase", int(ts)) for ts in stamps]
    expired = await traits.apply({"u1": update(events=events)})
    assert expired == 1  # 40 days old, past purchase's 30 days
    again = await traits.apply({"u1": update(events=events[1:3])})  # duplicates
    assert again == 0
    snapshot = await reader.snapshot("u1")
    assert snapshot.events == {"purchase": (now - DAY, now - 2 * DAY, now - 3 * DAY)}
    stored = await store.hgetall(keys.traits_key("u1"))
    assert len(stored) == 3  # trimmed in the store, not just in the snapshot
    clock.now += 28 * DAY  # the 3-day-old one expires 30 days after its time (hour-rounded)
    assert (await reader.snapshot("u1")).events == {"purchase": (now - DAY, now - 2 * DAY)}


async def test_events_stay_near_their_bound_without_a_read_per_write(
    store: Store, clock: FakeClock
) -> None:
    catalog = TraitCatalog(event_ttl=30 * DAY, max_events_per_name=10)
    traits = TraitStore(store, catalog, clock=clock, rng=random.Random(3))
    reader = ProfileReader(store, max_events_per_name=10, clock=clock)
    now = int(NOW)
    reads = 0
    hgetall_many = store.hgetall_many

    async def counting(names: Sequence[str]) -> list[dict[str, bytes]]:
        nonlocal reads
        reads += 1
        return await hgetall_many(names)

    store.hgetall_many = counting  # type: ignore[method-assign]
    most = 0
    for i in range(300):  # one event per batch: trimmed now and then, not each time
        await traits.apply({"u1": update(events=[("view", now - 3000 + i)])})
        most = max(most, len(await store.hgetall(keys.traits_key("u1"))))
    assert 10 < reads < 150  # about one write in five (max_events_per_name / 2) reads
    assert most <= 10 + 5 * 8  # a few times trim_every beyond the bound, at worst
    newest = tuple(float(now - 3000 + i) for i in range(299, 289, -1))
    assert (await reader.snapshot("u1")).events == {"view": newest}
    many = [("view", now - 100 + i) for i in range(25)]  # one batch beyond the bound
    await traits.apply({"u2": update(events=many)})
    assert len(await store.hgetall(keys.traits_key("u2"))) == 10  # never written


async def test_on_profile_changed_hears_each_batch(store: Store, clock: FakeClock) -> None:
    heard: list[list[str]] = []

    async def listener(uids: list[str]) -> None:
        heard.append(sorted(uids))

    async def broken(uids: list[str]) -> None:
        raise RuntimeError("subscriber bug")

    traits = TraitStore(store, CATALOG, clock=clock, on_profile_changed=[broken, listener])
    await traits.apply({"u1": update(attributes={"a": 1}), "u2": update(remove=["a"])})
    await traits.apply({})
    assert heard == [["u1", "u2"]]


async def test_snapshot_carries_partners_exposures_and_traits(
    service: DmpService, store: Store, clock: FakeClock
) -> None:
    from cookiematch.dmp.events import EventType, ImpressionEvent

    await service.matches.record("analytics", "d1", "A-1", clock())
    await service.impression("d1", ImpressionEvent(EventType.CLICK, "c9"))
    await service.traits.apply({"d1": update(attributes={"tier": "gold"})})
    one, two = await service.profile_reader.snapshots(["d1", "nobody"])
    assert one.partners == {"analytics": "A-1"}
    assert one.exposures == {"click": {"c9": 1}}
    assert one.attributes == {"tier": "gold"}
    assert two.dmp_uid == "nobody" and not two.attributes
    profile = await service.profile("d1")
    assert profile is not None and profile.attributes == {"tier": "gold"}


def test_catalog_checks_declared_types() -> None:
    catalog = TraitCatalog(
        traits={"age": TraitDef("age", TraitKind.NUMBER, DAY)}, reject_unknown=True
    )
    assert catalog.attribute_problem("age", 3) is None
    assert catalog.attribute_problem("age", True) == "expected number"
    assert catalog.attribute_problem("other", "x") == "unknown trait"
    assert catalog.event_problem("age") == "is a number attribute"


def test_decode_traits_reads_the_fields_it_names_and_skips_malformed_ones() -> None:
    fields = {
        attribute_field("tier"): b'"gold"',
        attribute_field("tags"): b'["a","b"]',
        attribute_field("broken"): b"{not json",
        event_field("view", 10): b"crm",
        event_field("view", 30): b"crm",
        event_field("view", 20): b"web",
        event_field("buy", 5): b"crm",
        "e|view|soon": b"crm",  # not a timestamp
        "x|other": b"1",  # not a trait field
    }
    assert decode_traits(fields, 2) == (
        {"tags": ["a", "b"], "tier": "gold"},
        {"buy": (5.0,), "view": (30.0, 20.0)},
    )
    assert decode_traits(fields, None)[1]["view"] == (30.0, 20.0, 10.0)
