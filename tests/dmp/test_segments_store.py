"""Memberships in the store, incremental updates and the full recompute, on SQLite and on a
real Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from cookiematch.dmp.events import EventLog, EventType, ImpressionEvent
from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.segments import Segment, SegmentUpdater, StoredProfiles, parse_rule
from cookiematch.dmp.segments.membership import Change, Memberships
from cookiematch.dmp.segments.source import ScannedProfile
from cookiematch.dmp.segments.updater import last_recompute, stored_sketches
from cookiematch.dmp.snapshot import ProfileSnapshot
from cookiematch.storage import Store

from .helpers import NOW, FakeClock
from .segment_stores import any_store  # noqa: F401
from .store_scan import members_of, sizes_of
from support.stores import shared_cluster  # noqa: F401

SEGMENTS = [
    Segment("gold", parse_rule({"attribute": "tier", "value": "gold"})),
    Segment("buyers", parse_rule({"event": "purchase", "within_days": 30})),
]


class MemorySource:
    """Snapshots kept in a dict (what the ingestion's profile reader would build)."""

    def __init__(self) -> None:
        self.profiles: dict[str, ProfileSnapshot] = {}
        self.stored: dict[str, frozenset[str]] = {}

    async def snapshot(self, dmp_uid: str, now: float) -> ProfileSnapshot:
        return self.profiles.get(dmp_uid, ProfileSnapshot(dmp_uid))

    async def snapshots(self, dmp_uids: Sequence[str], now: float) -> list[ProfileSnapshot]:
        return [await self.snapshot(uid, now) for uid in dmp_uids]

    async def scan(self, now: float) -> AsyncIterator[ScannedProfile]:
        for uid in sorted(self.profiles):
            yield ScannedProfile(self.profiles[uid], self.stored.get(uid, frozenset()))


async def test_memberships_round_trip(any_store: Store) -> None:  # noqa: F811
    members = Memberships(any_store)
    await members.apply(
        [Change(f"u{i}", {"a": NOW, **({"b": NOW} if i % 2 else {})}) for i in range(50)]
    )
    assert await members.of("u1") == {"a": NOW, "b": NOW}
    assert await sizes_of(any_store, ["a", "b", "c"]) == {"a": 50, "b": 25, "c": 0}
    await members.apply([Change("u1", left=("a", "b")), Change("u3", left=("b",))])
    assert await members.of("u1") == {}
    assert await sizes_of(any_store, ["a", "b"]) == {"a": 49, "b": 23}
    assert await members_of(any_store, "a") == {f"u{i}" for i in range(50) if i != 1}
    assert not [k async for k, _ in any_store.scan_maps("dmps:")]  # no member index


async def test_incremental_updates_join_and_leave(any_store: Store) -> None:  # noqa: F811
    clock = FakeClock()
    source = MemorySource()
    updater = SegmentUpdater(any_store, SEGMENTS, source, clock=clock)
    source.profiles["u1"] = ProfileSnapshot(
        "u1", attributes={"tier": "gold"}, events={"purchase": (NOW - 86400,)}
    )
    source.profiles["u2"] = ProfileSnapshot("u2", attributes={"tier": "silver"})
    changes = await updater.profiles_changed(["u1", "u2", "u1"])
    assert [(c.dmp_uid, sorted(c.joined)) for c in changes] == [("u1", ["buyers", "gold"])]
    assert await updater.memberships.of("u1") == {"buyers": NOW, "gold": NOW}

    clock.now += 40 * 86400  # the purchase leaves the window; nothing changed otherwise
    source.profiles["u2"] = ProfileSnapshot("u2", attributes={"tier": "gold"})
    changes = await updater.profiles_changed(["u1", "u2"])
    assert {c.dmp_uid: (sorted(c.joined), c.left) for c in changes} == {
        "u1": ([], ("buyers",)),
        "u2": (["gold"], ()),
    }
    assert await sizes_of(any_store, ["gold", "buyers"]) == {"gold": 2, "buyers": 0}
    assert await updater.profiles_changed(["u1", "u2"]) == []  # nothing left to write


async def test_a_segment_no_longer_configured_is_dropped(any_store: Store) -> None:  # noqa: F811
    source = MemorySource()
    source.profiles["u1"] = ProfileSnapshot("u1", attributes={"tier": "gold"})
    await SegmentUpdater(any_store, SEGMENTS, source, clock=FakeClock()).profiles_changed(["u1"])
    updater = SegmentUpdater(any_store, SEGMENTS[1:], source, clock=FakeClock())
    changes = await updater.profiles_changed(["u1"])
    assert changes[0].left == ("gold",)


async def _populate(store: Store, browsers: int) -> None:
    """Real profile data: a sync with ``analytics`` for even browsers, impressions of c1 for
    every third, clicks of c1 for every ninth."""
    matches = MatchTable(store, 86400 * 30)
    events = EventLog(store, max_per_profile=10, ttl_seconds=86400 * 30)
    for i in range(browsers):
        uid = f"b{i:05d}"
        if i % 2 == 0:
            await matches.record("analytics", uid, f"A-{i}", NOW)
        if i % 3 == 0:
            await events.record(uid, ImpressionEvent(EventType.IMP, "c1"), NOW)
        if i % 9 == 0:
            await events.record(uid, ImpressionEvent(EventType.CLICK, "c1"), NOW)


async def test_recompute_over_stored_profiles(any_store: Store) -> None:  # noqa: F811
    await _populate(any_store, 90)
    segments = [
        Segment("synced", parse_rule({"synced": "analytics"})),
        Segment("clickers", parse_rule({"exposed": "click", "campaign": "c1"})),
        Segment("seen_twice", parse_rule({"exposed": "imp", "at_least": 2})),
    ]
    updater = SegmentUpdater(any_store, segments, StoredProfiles(any_store), clock=FakeClock())
    seen: list[int] = []
    report = await updater.recompute(batch=7, progress=seen.append)
    assert report.profiles == 60  # browsers with a sync or an event
    assert sum(seen) == 60
    assert report.sizes == {"synced": 45, "clickers": 10, "seen_twice": 0}
    assert report.joined == 55 and report.left == 0
    assert await sizes_of(any_store, ["synced", "clickers"]) == {"synced": 45, "clickers": 10}
    assert await updater.memberships.of("b00018") == {"synced": NOW, "clickers": NOW}

    again = await updater.recompute()
    assert (again.joined, again.left, again.sizes) == (0, 0, report.sizes)
    assert (await last_recompute(any_store)) == again

    sketches = await stored_sketches(any_store)
    assert sketches is not None
    assert {"segment:synced", "imp:c1", "click:c1"} <= set(sketches.names())
    assert sketches.size("segment:synced").value == 45  # exact below k hashes
    assert sketches.pair("click:c1", "segment:synced").both.value == 5


async def test_recompute_repairs_a_browser_map_that_lost_a_membership(
    any_store: Store,  # noqa: F811
) -> None:
    await _populate(any_store, 20)
    segments = [Segment("synced", parse_rule({"synced": "analytics"}))]
    updater = SegmentUpdater(any_store, segments, StoredProfiles(any_store), clock=FakeClock())
    await updater.recompute()
    await any_store.hdel("dmp:{b00004}:s", ["synced"])  # lost (a write the store did not take)
    await updater.memberships.apply([Change("b00006", {"synced": NOW})])  # already in
    report = await updater.recompute()
    assert report.joined == 1
    assert await members_of(any_store, "synced") == {f"b{i:05d}" for i in range(0, 20, 2)}
