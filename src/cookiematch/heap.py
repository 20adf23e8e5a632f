"""A long-running process's garbage collector, settled once the process has started.

With CPython's default thresholds (700, 10, 10) a busy process runs full (generation 2)
collections that scan every object it holds (buyers, compiled campaigns, the bid log, caches):
``/bid`` under ``bench/handler_bench.py`` saw three in 10 s, the longest stalling the event
loop 56 ms, more than a store call's 50 ms deadline (118 bids answered no-bid for it). After
start-up ``settle`` collects once, freezes what start-up built (``gc.freeze``: never scanned
again) and raises the first generation's threshold, so collections of the young objects the
work leaves are rare and short: the same run saw no collection at all while serving. Most
garbage has no cycles and is freed by reference counting; the collector is only for cycles,
which the raised thresholds still find.

Served workers settle as their App's last start-up hook (``web/heap.py``); the frequency
checks' child process (``exchange/check_process.py``) before its first batch.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "settle"]

THRESHOLDS = (50_000, 20, 100)
"""Allocations (net) before a young collection; young collections before a middle one;
middle ones before a full one (CPython's defaults: 700, 10, 10)."""


def settle() -> None:
    """One collection, what exists frozen, the thresholds raised."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
