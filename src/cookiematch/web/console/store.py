"""The store's health, charted the same in every role's console."""

from __future__ import annotations

from cookiematch.web.console.html import chart
from cookiematch.web.console.series import Selection

__all__ = ["STORE_SELECTIONS", "store_charts"]

STORE_SELECTIONS = (
    Selection("store_calls", "cookiematch_store_calls", ("outcome",)),
    Selection("store_breaker_open", "cookiematch_store_breaker_open", counter=False),
    Selection("store_queue_depth", "cookiematch_store_queue_depth", counter=False),
)


def store_charts() -> str:
    """Store calls by outcome, the circuit breaker, the queue of writes."""
    return (
        chart("Store calls per second by outcome", "store_calls")
        + chart("Store circuit breaker open (1)", "store_breaker_open")
        + chart("Queued store writes", "store_queue_depth")
    )
