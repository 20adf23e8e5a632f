"""The lease (``storage/lease.py``) on every backend: one holder at a time, several store
objects contending as several workers do, renewed while its job runs, lost when it lapses."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from cookiematch.errors import LeaseLost
from cookiematch.storage import Store
from cookiematch.storage.lease import SAFE, Lease, holder_of

if TYPE_CHECKING:
    from .conftest import FakeClock, MakeStore

KEY = "{jobs}:lease"


def workers(make_store: MakeStore, clock: FakeClock, count: int, ttl: float) -> list[Lease]:
    """One lease handle per worker, each over its own store object."""
    return [Lease(make_store(), KEY, f"w{i}", ttl=ttl, clock=clock) for i in range(count)]


async def test_one_of_two_contenders_holds_the_lease(
    make_store: MakeStore, clock: FakeClock
) -> None:
    a, b = workers(make_store, clock, 2, ttl=60)
    won = await asyncio.gather(a.claim(), b.claim())
    assert sorted(won) == [False, True]
    winner, loser = (a, b) if won[0] else (b, a)
    assert winner.held and not loser.held
    assert await holder_of(make_store(), KEY) == winner.holder
    assert await loser.claim() is False  # held: nobody else gets it
    await winner.release()
    assert not winner.held
    assert await holder_of(make_store(), KEY) is None
    assert await loser.claim() is True  # released: free at once


async def test_many_contenders_one_winner_per_round(
    make_store: MakeStore, clock: FakeClock
) -> None:
    leases = workers(make_store, clock, 6, ttl=60)
    for _ in range(4):
        won = await asyncio.gather(*(lease.claim() for lease in leases))
        assert won.count(True) == 1, won
        await leases[won.index(True)].release()


async def test_a_lapsed_lease_goes_to_the_next_and_is_not_touched_by_the_old_holder(
    make_store: MakeStore, clock: FakeClock
) -> None:
    a, b = workers(make_store, clock, 2, ttl=10)
    assert await a.claim()
    await clock.advance(10 * SAFE)  # a's claim may be gone any moment: a stops counting on it
    assert not a.held
    assert await b.claim() is False  # but it is still live in the store
    await clock.advance(10)
    assert await b.claim() is True
    await a.release()  # lapsed: must not delete b's claim
    with pytest.raises(LeaseLost):
        await a.renew()
    assert await holder_of(make_store(), KEY) == "w1"
    await b.renew()
    assert b.held


async def test_the_lease_is_renewed_while_its_job_runs(
    make_store: MakeStore, clock: FakeClock
) -> None:
    a, b = workers(make_store, clock, 2, ttl=100)
    a.renew_every = 0.01  # real seconds between renewals; expiry follows the test clock
    assert await a.claim()

    async def job() -> str:
        for _ in range(5):  # 250 s of the test clock: 2.5 TTLs
            await clock.advance(50)
            while a.since != clock.now:  # renewed meanwhile (a few real milliseconds)
                await asyncio.sleep(0.005)
            assert await b.claim() is False
        return "done"

    assert await a.run(job()) == "done"
    assert a.held
    await a.release()
    assert await b.claim() is True


async def test_a_job_whose_lease_lapses_is_cancelled(
    make_store: MakeStore, clock: FakeClock
) -> None:
    (a,) = workers(make_store, clock, 1, ttl=100)
    a.renew_every = 0.01
    assert await a.claim()
    cancelled = asyncio.Event()

    async def job() -> None:
        await clock.advance(80)  # past SAFE of the TTL before the next renewal
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(LeaseLost):
        await asyncio.wait_for(a.run(job()), 10)
    assert cancelled.is_set() and not a.held


async def test_a_renewal_the_store_refuses_loses_the_lease(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store: Store = make_store()
    lease = Lease(store, KEY, "w0", ttl=100, clock=clock)
    assert await lease.claim()
    await store.close()
    with pytest.raises(LeaseLost, match="could not be renewed"):
        await lease.renew()


async def test_a_lease_needs_a_positive_ttl(make_store: MakeStore) -> None:
    with pytest.raises(ValueError):
        Lease(make_store(), KEY, "w0", ttl=0)
