"""How late each worker's event loop runs: ``cookiematch_event_loop_lag_seconds``.

``watch_loop`` sleeps ``PROBE_SECONDS`` at a time and records how much later than asked the
loop woke it up: how long anything ready on the loop at that moment (a request's next step, a
store's answer) waited behind the work in front of it (a slice of frequency-capping checks, a
garbage collection, a slow handler). Summed over the workers like every family here; its
buckets read as "this share of the probes waited at least that long". uvloop keeps its timers
in whole milliseconds, so a lag under 1 ms is rounding.
"""

from __future__ import annotations

import asyncio
import time

from cookiematch.web.counters import LabelledHistogram

__all__ = ["LOOP_LAG", "PROBE_SECONDS", "watch_loop"]

PROBE_SECONDS = 0.1
"""How often a worker probes its loop: ten timers a second, nothing to measure."""

LOOP_LAG = LabelledHistogram(
    "cookiematch_event_loop_lag_seconds",
    "How much later than asked a worker's event loop ran a timer (probed every 0.1 s)",
    (),
)


async def watch_loop(probe_seconds: float = PROBE_SECONDS) -> None:
    """Probe the running loop every ``probe_seconds``; forever (a worker's task)."""
    clock = time.perf_counter
    while True:
        asked = clock()
        await asyncio.sleep(probe_seconds)
        LOOP_LAG.observe((), max(0.0, clock() - asked - probe_seconds))
