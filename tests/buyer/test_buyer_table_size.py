"""The match table's size and stale share, counted on every backend in both layouts, once per
interval across workers."""

from __future__ import annotations

import pytest

from cookiematch.buyer.matchtable import MatchTable
from cookiematch.buyer.table_size import MatchTableSize, MatchTableSizeLog, measure
from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.storage import Store

from .conftest import NID, Clock
from support.stores import backend_store, shared_cluster, shared_redis  # noqa: F401

STALE_AFTER = 5 * DAY
GIDS = ["Z2lkLW9uZQ", "Z2lkLXR3bw", "not canonical base64 +/"]  # two canonical, one not


def uid(n: int) -> bytes:
    return bytes([n]) * 16


@pytest.fixture
def store(backend_store: Store) -> Store:  # noqa: F811 (the fixture, by name)
    return backend_store


@pytest.fixture(params=[None, 4], ids=["keys", "buckets"])
def table(request: pytest.FixtureRequest, store: Store, clock: Clock) -> MatchTable:
    return MatchTable(store, NID, ttl_seconds=10 * DAY, clock=clock, buckets=request.param)


async def test_each_pairing_counts_once_and_old_ones_are_stale(
    table: MatchTable, store: Store, clock: Clock
) -> None:
    await table.record(GIDS[0], uid(1), 1)
    await table.record(GIDS[1], uid(2), 1)
    await table.record(GIDS[1], uid(3), 1)  # replaces gid 1's pairing: still one entry
    clock.advance(6 * DAY)
    await table.record(GIDS[2], uid(4), 1)
    other = MatchTable(store, NID + "2", ttl_seconds=DAY, clock=clock, buckets=table.buckets and 4)
    await other.record(GIDS[0], uid(9), 1)  # another buyer's table: not counted
    size = await measure(table, STALE_AFTER, clock)
    assert size == MatchTableSize(clock(), entries=3, stale=2)
    clock.advance(-5 * DAY)  # one day after the first matches: nothing stale yet
    assert await measure(table, STALE_AFTER, clock) == MatchTableSize(clock(), 3, 0)


async def test_an_empty_table_counts_nothing(table: MatchTable, clock: Clock) -> None:
    assert await measure(table, STALE_AFTER, clock) == MatchTableSize(clock(), 0, 0)


async def test_lapsed_bucketed_entries_are_not_counted(store: Store, clock: Clock) -> None:
    table = MatchTable(store, NID, ttl_seconds=10 * DAY, clock=clock, buckets=4)
    await table.record(GIDS[0], uid(1), 1)
    clock.advance(8 * DAY)
    await table.record(GIDS[1], uid(2), 1)
    clock.advance(3 * DAY)  # the first lapsed (still stored, no store TTL), the second fresh
    assert await measure(table, STALE_AFTER, clock) == MatchTableSize(clock(), 1, 0)


async def test_one_worker_measures_per_interval_and_every_worker_reads_it(
    table: MatchTable, clock: Clock
) -> None:
    await table.record(GIDS[0], uid(1), 1)
    first, second, third = (
        MatchTableSizeLog(table, stale_after_seconds=STALE_AFTER, interval_seconds=60, clock=clock)
        for _ in range(3)
    )
    assert await second.latest() is None and second.cached is None  # nothing measured yet
    measured = await first.measure_if_due()
    assert measured == MatchTableSize(clock(), 1, 0)
    assert await second.measure_if_due() is None  # the interval is taken
    assert await third.latest() == measured == third.cached
