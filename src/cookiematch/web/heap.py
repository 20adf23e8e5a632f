"""A served worker's garbage collector, settled once the worker has started.

With CPython's default thresholds (700, 10, 10) a busy worker runs full (generation 2)
collections that scan every object it holds (buyers, compiled campaigns, the bid log, caches):
``/bid`` under ``bench/handler_bench.py`` saw three in 10 s, the longest stalling the event
loop 56 ms, more than a store call's 50 ms deadline (118 bids answered no-bid for it). After
start-up ``settle_heap`` collects once, freezes what start-up built (``gc.freeze``: never
scanned again) and raises the first generation's threshold, so collections of the young
objects a request leaves are rare and short: the same run saw no collection at all while
serving. Most of a request's garbage has no cycles and is freed by reference counting; the
collector is only for cycles, which the raised thresholds still find.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "settle_heap"]

THRESHOLDS = (50_000, 20, 100)
"""Allocations (net) before a young collection; young collections before a middle one;
middle ones before a full one (CPython's defaults: 700, 10, 10)."""


async def settle_heap() -> None:
    """The App's last startup hook in a served worker (``web/server.py``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
