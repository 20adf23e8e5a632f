"""User-list changes counted by several workers, shared through a real SQLite store."""

from __future__ import annotations

from cookiematch.exchange.list_changes import WINDOW_DAYS, Change, ListChanges, changes_key
from cookiematch.storage import Store

from support.clock import FakeClock

DAY = 86400


async def test_workers_add_up_and_a_flush_writes_only_what_changed(store: Store) -> None:
    clock = FakeClock()
    seen: list[tuple[int, Change, int]] = []
    one = ListChanges(store, worker_id="a", clock=clock, on_count=lambda *c: seen.append(c))
    two = ListChanges(store, worker_id="b", clock=clock)
    one.count(7, Change.ADDED, 3)
    one.count(7, Change.REMOVED)
    two.count(7, Change.ADDED, 2)
    two.count(8, Change.EXPIRED)
    one.count(7, Change.ADDED, 0)  # nothing
    assert seen == [(7, Change.ADDED, 3), (7, Change.REMOVED, 1)]
    assert await one.totals(7) == {"added": 0, "removed": 0, "expired": 0}  # not flushed
    await one.flush()
    await two.flush()
    assert await one.totals(7) == {"added": 5, "removed": 1, "expired": 0}
    assert await two.totals(8) == {"added": 0, "removed": 0, "expired": 1}
    one.count(7, Change.ADDED)
    await one.flush()  # the worker's cumulative count of the day: no increment lost
    assert (await two.totals(7))["added"] == 6
    assert len(await store.hgetall(changes_key(7))) == 3  # a.added, a.removed, b.added


async def test_days_out_of_the_window_are_not_counted(store: Store) -> None:
    clock = FakeClock()
    worker = ListChanges(store, worker_id="a", clock=clock)
    worker.count(7, Change.ADDED, 4)
    await worker.flush()
    clock.advance(DAY)
    worker.count(7, Change.ADDED, 1)
    await worker.flush()
    assert (await worker.totals(7))["added"] == 5
    clock.advance((WINDOW_DAYS - 1) * DAY)  # the first day has left the window
    assert (await worker.totals(7))["added"] == 1
