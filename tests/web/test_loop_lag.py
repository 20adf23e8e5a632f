"""``cookiematch_event_loop_lag_seconds``: a loop held up is seen as late by the probe, and a
served worker exposes the family."""

from __future__ import annotations

import asyncio
import contextlib
import time

from cookiematch.web.loop_lag import LOOP_LAG, watch_loop


def lag_sum() -> float:
    """This worker's observed lag in all (the histogram's sum)."""
    return LOOP_LAG.own(())[-1]


async def test_a_loop_held_up_is_recorded_as_late() -> None:
    probes, late = LOOP_LAG.count(()), lag_sum()
    watch = asyncio.get_running_loop().create_task(watch_loop(0.01))
    await asyncio.sleep(0.05)  # a few probes of an idle loop
    time.sleep(0.08)  # the loop held up: the next probe wakes ~70 ms late
    await asyncio.sleep(0.05)
    watch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watch
    assert LOOP_LAG.count(()) - probes >= 4
    assert 0.06 <= lag_sum() - late < 1.0
