"""The funnel in the store (``dmp/funnel_log.py``): the fields of processes gone are rolled up
into one total, so they stay bounded, and every count is still added exactly once; an earlier
version's keys are moved in once; on SQLite, Redis and a Redis Cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from cookiematch.config import load_config
from cookiematch.dmp import keys
from cookiematch.dmp.funnel import Funnel
from cookiematch.dmp.funnel_log import STALE_SECONDS, FunnelLog, FunnelTotal, read_total, roll_up
from cookiematch.roots.dmp import open_core
from cookiematch.storage import Store, open_store

from .helpers import FakeClock
from .segment_stores import clocked_store, wall_clock  # noqa: F401
from .test_ingest_cli import write_config
from support.stores import shared_cluster, shared_redis  # noqa: F401

MINUTE = 60.0


async def funnel_fields(store: Store) -> list[str]:
    return sorted(await store.hgetall(keys.FUNNEL_KEY))


async def pixels(store: Store) -> int:
    return (await read_total(store)).partners.get("crm", {}).get("pixels", 0)


async def test_runs_every_five_minutes_leave_an_hour_of_fields_and_every_count(
    clocked_store: Store,  # noqa: F811
    wall_clock: FakeClock,  # noqa: F811
) -> None:
    store, clock = clocked_store, wall_clock
    """A cron job ingesting every 5 minutes for a day: 288 runs, each with a field of its own,
    each rolling up at its end; the fields stay those of the last hour."""
    for run in range(288):
        log = FunnelLog(store, f"host-{run}", Funnel(), clock=clock)
        log.funnel.partner("crm", "pixels", 2)
        await log.flush()
        assert await roll_up(store, f"host-{run}", clock=clock) is not None
        assert len(await funnel_fields(store)) <= STALE_SECONDS / (5 * MINUTE) + 2
        assert await pixels(store) == 2 * (run + 1)
        clock.now += 5 * MINUTE
    assert await store.get(keys.FUNNEL_TOTAL_KEY) is not None


async def test_a_live_worker_keeps_its_field_and_a_stalled_one_counts_once(
    clocked_store: Store,  # noqa: F811
    wall_clock: FakeClock,  # noqa: F811
) -> None:
    store, clock = clocked_store, wall_clock
    live = FunnelLog(store, "live", Funnel(), clock=clock)
    stalled = FunnelLog(store, "stalled", Funnel(), clock=clock)
    for log in (live, stalled):
        log.funnel.partner("crm", "pixels", 5)
        await log.flush()
    for _ in range(12):  # two hours: the live worker flushes (nothing new), the other cannot
        clock.now += 10 * MINUTE
        await live.flush()
        await roll_up(store, "elsewhere", clock=clock)
        assert await pixels(store) == 10
    assert await funnel_fields(store) == [live.field]  # the stalled one's: rolled up, deleted
    stalled.funnel.partner("crm", "pixels", 1)
    await stalled.flush()  # back: under a new field, only what the rolled-up one did not hold
    assert stalled.field != "stalled"
    assert await pixels(store) == 11
    live.funnel.partner("crm", "pixels", 1)
    assert (await live.total()).partners["crm"]["pixels"] == 12


async def test_one_roll_up_at_a_time(
    clocked_store: Store,  # noqa: F811
    wall_clock: FakeClock,  # noqa: F811
) -> None:
    store, clock = clocked_store, wall_clock
    log = FunnelLog(store, "old", Funnel(), clock=clock)
    log.funnel.partner("crm", "pixels", 3)
    await log.flush()
    clock.now += 2 * STALE_SECONDS
    assert await store.set_if_absent(keys.FUNNEL_ROLLUP_LEASE, b"other", ttl=60)
    assert await roll_up(store, "me", clock=clock) is None  # another process holds the lease
    assert await funnel_fields(store) == [log.field]
    clock.now += 61
    assert await roll_up(store, "me", clock=clock) == 1
    assert await pixels(store) == 3


async def test_an_earlier_versions_keys_are_moved_in_and_count_once(
    clocked_store: Store,  # noqa: F811
    wall_clock: FakeClock,  # noqa: F811
) -> None:
    """An earlier version kept one plain key a process and named the keys its total holds:
    the first reader moves them into the map, a key the total holds is still skipped and
    deleted by the next roll-up, and the others count once."""
    store, clock = clocked_store, wall_clock
    earlier = Funnel()
    earlier.partner("crm", "pixels", 4)
    old_counts = earlier.snapshot()
    old_counts.seen = clock()
    await store.set(keys.LEGACY_FUNNEL_PREFIX + "old-live", msgspec.json.encode(old_counts))
    folded = Funnel()
    folded.partner("crm", "pixels", 7)
    total = FunnelTotal(folded.snapshot(), [keys.LEGACY_FUNNEL_PREFIX + "old-gone"])
    await store.set(keys.FUNNEL_TOTAL_KEY, msgspec.json.encode(total))
    await store.set(keys.LEGACY_FUNNEL_PREFIX + "old-gone", msgspec.json.encode(folded.snapshot()))
    log = FunnelLog(store, "new", Funnel(), clock=clock)
    log.funnel.partner("crm", "pixels", 1)
    await log.flush()

    assert await pixels(store) == 4 + 7 + 1
    assert await funnel_fields(store) == ["new", "old-gone", "old-live"]
    assert [key async for key, _ in store.scan(keys.LEGACY_FUNNEL_PREFIX)] == []
    assert await roll_up(store, "me", clock=clock) == 0  # nothing stale: "old-gone" deleted
    assert await funnel_fields(store) == ["new", "old-live"]
    assert await pixels(store) == 12


def test_a_failed_cli_run_still_writes_what_it_counted(tmp_path: Path) -> None:
    """A run that raises after ingesting part of its input: its counts reach the funnel."""
    config = load_config(write_config(tmp_path))

    async def run() -> None:
        async with open_core(config) as core:
            core.funnel.ingested("crm", {"records": 3, "accepted": 3})
            raise RuntimeError("the input broke off")

    with pytest.raises(RuntimeError, match="broke off"):
        asyncio.run(run())

    async def counted() -> dict[str, int]:
        store = open_store(config.store.url)
        try:
            return (await read_total(store)).ingest["crm"]
        finally:
            await store.close()

    assert asyncio.run(counted()) == {"records": 3, "accepted": 3}
