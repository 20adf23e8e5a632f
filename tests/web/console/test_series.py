"""The console's time series over a real SQLite store and a Prometheus registry of its own:
one point per interval across workers, rates, ratios, a party's lines, the bounds of a read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from cookiematch.storage import Store, open_store
from cookiematch.web.console.series import MAX_POINTS, Selection, SeriesLog

SELECTIONS = (
    Selection("outcomes", "tags", ("outcome",)),
    Selection("events", "events", ("nid", "event"), party_label="nid"),
    Selection("size", "size", counter=False),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite://{tmp_path / 'series.db'}")
    yield opened
    await opened.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def log_of(store: Store, registry: CollectorRegistry, clock: Clock, **options: float) -> SeriesLog:
    return SeriesLog(
        store,
        "exchange",
        SELECTIONS,
        interval_seconds=options.get("interval", 60),
        retention_seconds=options.get("retention", 48 * 3600),
        clock=clock,
        registry=registry,
    )


async def test_counters_become_rates_and_gauges_stay_values(
    store: Store, registry: CollectorRegistry
) -> None:
    tags = Counter("tags", "", ["outcome"], registry=registry)
    size = Gauge("size", "", registry=registry)
    clock = Clock()
    series = log_of(store, registry, clock, interval=1)
    for step in range(4):
        tags.labels("redirect").inc(10 * step)
        if step >= 2:
            tags.labels("error_1").inc(2)
        size.set(100 + step)
        assert await series.record_if_due()
        assert not await series.record_if_due()  # this interval has its point (the claim)
        clock.now += 2
        await store.delete("console:exchange:claim")  # the claim's TTL is wall-clock time
    lines = await series.read("outcomes", 60)
    assert lines.lines["redirect"] == [5.0, 10.0, 15.0]
    assert lines.lines["error_1"] == [None, 1.0, 1.0]  # missing before: it was 0
    gauge = await series.read("size", 60)
    assert gauge.lines == {"size": [100.0, 101.0, 102.0, 103.0]}


async def test_ratios_and_a_partys_lines(store: Store, registry: CollectorRegistry) -> None:
    events = Counter("events", "", ["nid", "event"], registry=registry)
    clock = Clock()
    series = log_of(store, registry, clock)
    for _ in range(3):
        events.labels("a", "bid_requests").inc(10)
        events.labels("a", "bid_requests_matched").inc(4)
        events.labels("b", "bid_requests").inc(0)
        assert await series.record_if_due()
        clock.now += 60
        await store.delete("console:exchange:claim")
    lines = await series.read("events", 3600)
    ratio = lines.ratio("bid_requests_matched", "bid_requests")
    assert ratio.lines == {"a": [0.4, 0.4]}  # b has no matched line
    own = await series.read("events", 3600, party="b")
    assert set(own.lines) == {"b|bid_requests"}
    assert set(lines.only("bid_requests_m").lines) == {"a|bid_requests_matched"}


async def test_a_read_is_bounded_by_max_points_and_retention(
    store: Store, registry: CollectorRegistry
) -> None:
    Gauge("size", "", registry=registry).set(1)
    clock = Clock()
    series = log_of(store, registry, clock, interval=1, retention=MAX_POINTS + 500)
    start = clock.now
    for step in range(MAX_POINTS + 100):
        clock.now = start + step
        await store.set(
            f"console:exchange:{int(clock.now)}",
            b'{"t": %d, "v": {"size": 1}}' % int(clock.now),
        )
    lines = await series.read("size", 10 * MAX_POINTS)
    assert len(lines.t) == MAX_POINTS + 1  # the buckets of MAX_POINTS intervals, both ends
    short = log_of(store, registry, clock, interval=1, retention=30)
    assert len((await short.read("size", 3600)).t) == 31


async def test_share_of_one_label_in_its_group(store: Store, registry: CollectorRegistry) -> None:
    tags = Counter("tags", "", ["outcome"], registry=registry)
    clock = Clock()
    series = log_of(store, registry, clock)
    for matched, unmatched in ((0, 0), (3, 1), (0, 0), (1, 1)):
        tags.labels("matched").inc(matched)
        tags.labels("unmatched").inc(unmatched)
        assert await series.record_if_due()
        clock.now += 60
        await store.delete("console:exchange:claim")
    share = (await series.read("outcomes", 3600)).share("matched")
    assert share.lines == {"matched": [0.75, None, 0.5]}  # nothing in the second step
