"""The shared match-tag rate limit on a real SQLite store: shares, sync, the stated bound."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from cookiematch.exchange.rate_limit import (
    STALE_SECONDS,
    SYNC_SECONDS,
    SharedRateLimit,
    rate_limit_key,
    share_of,
)
from cookiematch.storage import Store, open_store

from support.clock import FakeClock

LIMIT = 100.0


def limiter(store: Store, clock: FakeClock, worker: str) -> SharedRateLimit:
    return SharedRateLimit(store, clock=clock, worker_id=worker)


def test_shares_add_up_to_the_limit() -> None:
    for mine, others in [(300.0, [100.0]), (10.0, [20.0, 30.0]), (0.0, [150.0]), (0.0, [])]:
        total = share_of(LIMIT, mine, others) + sum(
            share_of(LIMIT, d, [mine, *others[:i], *others[i + 1 :]]) for i, d in enumerate(others)
        )
        assert math.isclose(total, LIMIT)
    assert share_of(LIMIT, 300.0, [100.0]) == 75.0  # contended: in proportion to demand
    assert share_of(LIMIT, 10.0, [20.0]) == 10.0 + 70.0 / 2  # spare split evenly
    assert share_of(LIMIT, 0.0, []) == LIMIT  # alone, or no view yet


def admitted(limit: SharedRateLimit, key: str, n: int) -> int:
    return sum(limit.allow(key, LIMIT) for _ in range(n))


async def test_a_worker_alone_admits_its_limit_then_refills(store: Store) -> None:
    clock = FakeClock()
    one = limiter(store, clock, "w1")
    assert admitted(one, "dsp", 500) == LIMIT * SYNC_SECONDS  # one sync interval of burst
    clock.advance(0.25)
    assert admitted(one, "dsp", 500) == LIMIT * 0.25


def cold_bound(limit: float, seconds: float, workers: int) -> float:
    """rate_limit.py's bound from a cold start under load."""
    return limit * seconds + 3 * workers * limit * SYNC_SECONDS + workers


async def test_two_workers_under_load_share_the_limit(store: Store) -> None:
    """Each worker offered 400/s (in steps of 10 ms) for 20 s, limit 100/s for both: what they
    admit together stays within the bounds of rate_limit.py, from a cold start and settled."""
    clock = FakeClock()
    one, two = limiter(store, clock, "w1"), limiter(store, clock, "w2")
    limits = {"dsp": LIMIT}
    total = settled = 0
    step, ticks, warm = 0.01, 2000, 200  # 20 s, the last 18 settled
    for tick in range(ticks):
        clock.advance(step)
        now = admitted(one, "dsp", 4) + admitted(two, "dsp", 4)
        total += now
        settled += now if tick >= warm else 0
        if tick % int(SYNC_SECONDS / step) == 0:
            await one.sync(limits)
            await two.sync(limits)
    assert total <= cold_bound(LIMIT, ticks * step, 2)
    assert settled <= LIMIT * (ticks - warm) * step + LIMIT * SYNC_SECONDS + 2
    assert total >= LIMIT * ticks * step * 0.95  # the limit, not far below it
    assert one.share("dsp") == pytest.approx(LIMIT / 2, rel=0.05)


async def test_a_quiet_worker_keeps_headroom(store: Store) -> None:
    clock = FakeClock()
    busy, quiet = limiter(store, clock, "busy"), limiter(store, clock, "quiet")
    limits = {"dsp": LIMIT}
    for _ in range(4):  # busy sends 40/s, under the limit
        clock.advance(SYNC_SECONDS)
        admitted(busy, "dsp", int(40 * SYNC_SECONDS))
        await busy.sync(limits)
        await quiet.sync(limits)
    assert quiet.share("dsp") == pytest.approx((LIMIT - 40) / 2, rel=0.05)
    assert busy.share("dsp") == pytest.approx(40 + (LIMIT - 40) / 2, rel=0.05)
    assert set(await store.hgetall(rate_limit_key("dsp"))) == {"busy", "quiet"}


async def test_a_dead_workers_demand_expires(tmp_path: Path) -> None:
    clock = FakeClock()
    store = open_store(f"sqlite:///{tmp_path / 'rl.db'}", clock=clock)
    try:
        dead, alive = limiter(store, clock, "dead"), limiter(store, clock, "alive")
        admitted(dead, "dsp", 500)
        clock.advance(SYNC_SECONDS)
        await dead.sync({"dsp": LIMIT})
        await alive.sync({"dsp": LIMIT})
        assert alive.share("dsp") == 0.0  # contended, and no demand of its own yet
        clock.advance(STALE_SECONDS + 0.1)
        await alive.sync({"dsp": LIMIT})
        assert alive.share("dsp") == LIMIT
    finally:
        await store.close()


async def test_keys_no_longer_limited_are_forgotten(store: Store) -> None:
    clock = FakeClock()
    one = limiter(store, clock, "w1")
    admitted(one, "dsp", 1)
    await one.sync({"dsp": LIMIT})
    assert one.share("dsp") is not None
    await one.sync({})
    assert one.share("dsp") is None


async def test_a_lowered_limit_applies_at_once(store: Store) -> None:
    clock = FakeClock()
    one = limiter(store, clock, "w1")
    await one.sync({"dsp": LIMIT})
    clock.advance(1.0)
    assert sum(one.allow("dsp", 10.0) for _ in range(100)) == 10.0 * SYNC_SECONDS


async def test_requests_during_a_sync_count_in_the_next_demand(store: Store) -> None:
    """Requests that arrive while a sync waits for the store (long under load) were dropped
    from the demand when the sync ended: a worker could publish 0 while busy."""
    clock = FakeClock()
    one = limiter(store, clock, "w1")
    admitted(one, "dsp", 5)
    clock.advance(SYNC_SECONDS)
    syncing = asyncio.create_task(one.sync({"dsp": LIMIT}))
    await asyncio.sleep(0)  # the sync has measured its demand and waits for the store
    assert not syncing.done()
    clock.advance(0.1)
    admitted(one, "dsp", 10)  # meanwhile
    await syncing
    assert float((await store.hgetall(rate_limit_key("dsp")))["w1"]) == 5 / SYNC_SECONDS
    clock.advance(SYNC_SECONDS - 0.1)
    await one.sync({"dsp": LIMIT})
    assert float((await store.hgetall(rate_limit_key("dsp")))["w1"]) == 10 / SYNC_SECONDS


async def test_a_sync_does_not_refill_the_time_it_waited_twice(store: Store) -> None:
    """The tokens spent while a sync waited for the store are not given back when it ends."""
    clock = FakeClock()
    one = limiter(store, clock, "w1")
    await one.sync({"dsp": LIMIT})  # alone: all of the limit
    clock.advance(1.0)
    syncing = asyncio.create_task(one.sync({"dsp": LIMIT}))
    await asyncio.sleep(0)
    clock.advance(0.2)
    burst = admitted(one, "dsp", 500)  # the bucket refilled, then emptied, meanwhile
    await syncing
    assert burst == LIMIT * SYNC_SECONDS
    assert admitted(one, "dsp", 500) == 0  # no time passed since: nothing to admit
