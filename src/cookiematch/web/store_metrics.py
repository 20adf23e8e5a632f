"""The store's calls as a guard around it reports them, ready for its hooks:
``cookiematch_store_calls_total{op, outcome}``, ``cookiematch_store_call_seconds{op}`` and
``cookiematch_store_breaker_open`` (1 while a circuit breaker refuses calls, in any live
worker). A root passes ``on_call`` and ``on_state`` to the guard it wraps the store in.

``StoreSampler`` reads the store's statistics every second: the queue of writes nobody waits
for (``cookiematch_store_queue_depth`` and its bound, the deepest worker's), the writes lost,
and group commit (``cookiematch_store_batches_total`` and the operations they carried: their
ratio is the mean batch size).
"""

from __future__ import annotations

import asyncio

from cookiematch.storage.guard import GuardedStore
from cookiematch.web.counters import (
    SHARED,
    LabelledCounter,
    LabelledGauge,
    LabelledHistogram,
    ResponseMeter,
)

__all__ = [
    "STORE_BREAKER_OPEN",
    "STORE_CALLS",
    "STORE_CALL_SECONDS",
    "StoreSampler",
    "on_call",
    "on_state",
]

STORE_CALLS = LabelledCounter(
    "cookiematch_store_calls",
    "Store calls, by operation and outcome",
    ("op", "outcome"),
)
STORE_CALL_SECONDS = LabelledHistogram(
    "cookiematch_store_call_seconds",
    "Time of a store call, by operation",
    ("op",),
)
STORE_BREAKER_OPEN = LabelledGauge(
    "cookiematch_store_breaker_open",
    "1 while the store's circuit breaker refuses calls (in any live worker), else 0",
    (),
    mode="max",
)


_record_call = ResponseMeter(STORE_CALLS, STORE_CALL_SECONDS, SHARED).record


def on_call(op: str, seconds: float, outcome: str) -> None:
    """One store call of ``op`` that took ``seconds`` and ended in ``outcome`` (counted and
    timed in one look-up)."""
    _record_call(op, outcome, seconds)


def on_state(opened: bool) -> None:
    """The breaker opened (``True``) or closed."""
    STORE_BREAKER_OPEN.set((), 1.0 if opened else 0.0)


STORE_QUEUE_DEPTH = LabelledGauge(
    "cookiematch_store_queue_depth",
    "Writes queued that nobody waits for, not yet stored (the deepest live worker's)",
    (),
    mode="max",
)
STORE_QUEUE_BOUND = LabelledGauge(
    "cookiematch_store_queue_bound",
    "The queue depth at which further queued writes are refused",
    (),
    mode="max",
)
STORE_WRITES_LOST = LabelledCounter(
    "cookiematch_store_writes_lost",
    "Queued writes the store did not take: refused at the bound or failed",
    (),
)
STORE_BATCHES = LabelledCounter(
    "cookiematch_store_batches",
    "Batches sent to the store (Redis pipelines, SQLite transactions): group commit",
    (),
)
STORE_BATCHED_OPS = LabelledCounter(
    "cookiematch_store_batched_ops",
    "Operations those batches carried (divided by the batches: the mean batch size)",
    (),
)
SAMPLE_EVERY_SECONDS = 1.0


class StoreSampler:
    """Copies one worker's store statistics into the families above."""

    def __init__(self, store: GuardedStore) -> None:
        self._store = store
        self._lost = 0
        self._batches = (0, 0)

    def sample(self) -> None:
        store = self._store
        STORE_QUEUE_DEPTH.set((), store.backlog)
        STORE_QUEUE_BOUND.set((), store.max_backlog)
        lost, batches = store.lost, store.batches
        STORE_WRITES_LOST.inc((), max(lost - self._lost, 0))  # 0: the series exists from now
        STORE_BATCHES.inc((), max(batches[0] - self._batches[0], 0))
        STORE_BATCHED_OPS.inc((), max(batches[1] - self._batches[1], 0))
        self._lost, self._batches = lost, batches

    async def run(self) -> None:
        """Sample every ``SAMPLE_EVERY_SECONDS``; forever."""
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_EVERY_SECONDS)
