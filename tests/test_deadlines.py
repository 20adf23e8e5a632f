"""Deadlines: time limits like ``asyncio.timeout``, many behind one timer."""

from __future__ import annotations

import asyncio

import pytest

from cookiematch.deadlines import Deadlines


async def value_after(event: asyncio.Event, value: int) -> int:
    await event.wait()
    return value


async def never() -> int:
    await asyncio.Event().wait()
    return 0


async def test_in_time_gives_the_value() -> None:
    done = asyncio.Event()
    done.set()
    assert await Deadlines().run(value_after(done, 7), 5.0) == 7


async def test_past_the_limit_is_a_timeout() -> None:
    with pytest.raises(TimeoutError):
        await Deadlines().run(never(), 0.01)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the cancel was absorbed


async def test_a_finished_limit_never_cancels_its_task_later() -> None:
    deadlines = Deadlines()
    done = asyncio.Event()
    done.set()
    assert await deadlines.run(value_after(done, 1), 0.01) == 1
    await asyncio.sleep(0.05)  # past the limit: the shared timer fires, nothing is cancelled
    assert await deadlines.run(value_after(done, 2), 0.01) == 2


async def test_many_limits_share_one_timer_and_expire_in_order() -> None:
    deadlines = Deadlines()
    release = asyncio.Event()
    fast = [asyncio.create_task(deadlines.run(value_after(release, i), 5.0)) for i in range(3)]
    slow = [asyncio.create_task(deadlines.run(never(), 0.02 + i * 0.01)) for i in range(3)]
    late = asyncio.create_task(deadlines.run(value_after(release, 9), 5.0))
    await asyncio.sleep(0)
    results = await asyncio.gather(*slow, return_exceptions=True)
    assert all(isinstance(r, TimeoutError) for r in results)
    assert not any(t.done() for t in [*fast, late])  # later limits are still running
    release.set()
    assert await asyncio.gather(*fast, late) == [0, 1, 2, 9]


async def test_a_shorter_limit_behind_a_longer_one_expires_first() -> None:
    deadlines = Deadlines()
    long = asyncio.create_task(deadlines.run(never(), 5.0))
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        await deadlines.run(never(), 0.01)
    assert not long.done()
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long


async def test_an_outside_cancel_stays_a_cancel() -> None:
    task = asyncio.create_task(Deadlines().run(never(), 5.0))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_errors_pass_through() -> None:
    async def fail() -> int:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await Deadlines().run(fail(), 5.0)


def test_one_deadlines_across_event_loops() -> None:
    deadlines = Deadlines()
    left: list[asyncio.Task[int]] = []

    async def expire() -> None:
        with pytest.raises(TimeoutError):
            await deadlines.run(never(), 0.01)
        left.append(asyncio.create_task(deadlines.run(never(), 5.0)))  # queued when loop ends
        await asyncio.sleep(0)

    async def answer() -> int:
        done = asyncio.Event()
        done.set()
        return await deadlines.run(value_after(done, 3), 0.01)

    asyncio.run(expire())
    assert left[0].cancelled()
    assert asyncio.run(answer()) == 3


async def test_finished_limits_are_not_held_until_the_timer_fires() -> None:
    """Limits that finish in order are forgotten as the next ones start: a long limit run
    many times holds one at a time, not one a run until its timer fires; one still running
    holds those that finished behind it, and they go once it has finished."""
    deadlines = Deadlines()
    done = asyncio.Event()
    done.set()
    for i in range(10_000):
        assert await deadlines.run(value_after(done, i), 60.0) == i
    assert len(deadlines) <= 1
    release = asyncio.Event()
    first = asyncio.create_task(deadlines.run(value_after(release, -1), 60.0))
    await asyncio.sleep(0)
    for i in range(100):
        assert await deadlines.run(value_after(done, i), 60.0) == i
    assert len(deadlines) == 101  # behind the one running
    release.set()
    assert await first == -1
    assert await deadlines.run(value_after(done, 0), 60.0) == 0
    assert len(deadlines) <= 1
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):  # a shorter limit than those dropped: on time, not
        await deadlines.run(never(), 0.01)  # when the timer armed for them fires
    assert loop.time() - started < 30.0
