"""The store's calls as a guard around it reports them, ready for its hooks:
``cookiematch_store_calls_total{op, outcome}``, ``cookiematch_store_call_seconds{op}`` and
``cookiematch_store_breaker_open`` (1 while a circuit breaker refuses calls, in any live
worker). A root passes ``on_call`` and ``on_state`` to the guard it wraps the store in."""

from __future__ import annotations

from cookiematch.web.counters import LabelledCounter, LabelledGauge, LabelledHistogram

__all__ = ["STORE_BREAKER_OPEN", "STORE_CALLS", "STORE_CALL_SECONDS", "on_call", "on_state"]

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


def on_call(op: str, seconds: float, outcome: str) -> None:
    """One store call of ``op`` that took ``seconds`` and ended in ``outcome``."""
    STORE_CALLS.inc((op, outcome))
    STORE_CALL_SECONDS.observe((op,), seconds)


def on_state(opened: bool) -> None:
    """The breaker opened (``True``) or closed."""
    STORE_BREAKER_OPEN.set((), 1.0 if opened else 0.0)
