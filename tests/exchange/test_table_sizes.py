"""The hosted match table and the user lists, counted on every backend, once per interval
across workers."""

from __future__ import annotations

import asyncio

import pytest

from cookiematch.exchange import keys
from cookiematch.exchange.table_sizes import TableSizeLog, measure
from cookiematch.storage import Store

from support.stores import backend_store, shared_cluster, shared_redis  # noqa: F401

BROWSERS = [bytes([n]) * 16 for n in range(5)]


@pytest.fixture
def store(backend_store: Store) -> Store:  # noqa: F811 (the fixture, by name)
    return backend_store


async def _fill(store: Store) -> None:
    for browser in BROWSERS[:3]:
        await store.set(keys.hosted_match_key(browser, "dsp_a"), b"data", ttl=3600)
    await store.set(keys.hosted_match_key(BROWSERS[0], "dsp_b"), b"data", ttl=3600)
    await store.set(keys.hosted_match_key(BROWSERS[4], "dsp_b"), b"gone", ttl=0.05)
    for browser in BROWSERS[:4]:
        await store.hset(keys.user_lists_key(browser), {"7": b"1700000000"}, ttl=3600)
    await store.hset(keys.user_lists_key(BROWSERS[0]), {"8": b"1700000000"}, ttl=3600)
    await store.hset(keys.user_lists_key(BROWSERS[1]), {"8": b"1700000000"}, ttl=0.05)
    await asyncio.sleep(0.2)  # the short-lived ones expire


async def test_every_live_entry_is_counted_once(store: Store) -> None:
    await _fill(store)
    sizes = await measure(store, lambda: 1234.0)
    assert sizes.hosted == {"dsp_a": 3, "dsp_b": 1}
    assert sizes.user_lists == {"7": 4, "8": 1}
    assert sizes.measured_at == 1234.0


async def test_one_worker_measures_per_interval_and_every_worker_reads_it(store: Store) -> None:
    await _fill(store)
    first, second = (TableSizeLog(store, interval_seconds=60) for _ in range(2))
    assert await second.latest() is None and second.cached is None  # nothing measured yet
    measured = await first.measure_if_due()
    assert measured is not None and measured.hosted == {"dsp_a": 3, "dsp_b": 1}
    assert await second.measure_if_due() is None  # the interval is taken
    assert await first.measure_if_due() is None
    assert await TableSizeLog(store, interval_seconds=60).latest() == measured


async def test_an_empty_store_has_empty_tables(store: Store) -> None:
    sizes = await measure(store, lambda: 0.0)
    assert (sizes.hosted, sizes.user_lists) == ({}, {})
