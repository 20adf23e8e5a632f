"""The buyer's counters (``BuyerStats``) at ``/metrics``, added up over the server's workers.

One counter family per event, ``cookiematch_buyer_<event>_total{outcome=...}``; the server's
``BuyerStats`` counts into them (``buyer_counts``), so the admin API (the worker's own counts)
and ``/metrics`` (every worker's) read the same tallies.
"""

from __future__ import annotations

from cookiematch.buyer.stats import EVENTS
from cookiematch.web.counters import LabelledCounter, WorkerCounts

__all__ = ["BUYER_EVENTS", "buyer_counts"]

BUYER_EVENTS = {
    event: LabelledCounter(f"cookiematch_buyer_{event}", description, ("outcome",))
    for event, description in EVENTS.items()
}


def buyer_counts() -> WorkerCounts[tuple[str, str]]:
    """``BuyerStats``' counts by (event, label), written to the event's family."""
    return WorkerCounts(lambda key: (BUYER_EVENTS[key[0]], (key[1],)))
