"""The buyer's counters (``BuyerStats``) at ``/metrics``, added up over the server's workers.

One counter family per event, ``cookiematch_buyer_<event>_total{outcome=...}``; the server's
``BuyerStats`` counts into them (``buyer_counts``), so the admin API (the worker's own counts)
and ``/metrics`` (every worker's) read the same tallies. Also the match table's size as last
measured (``MatchTableSizeCollector``).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cookiematch.buyer.stats import EVENTS
from cookiematch.buyer.table_size import MatchTableSizeLog
from cookiematch.web.counters import LabelledCounter, WorkerCounts

__all__ = ["BUYER_EVENTS", "MatchTableSizeCollector", "buyer_counts"]

BUYER_EVENTS = {
    event: LabelledCounter(f"cookiematch_buyer_{event}", description, ("outcome",))
    for event, description in EVENTS.items()
}


def buyer_counts() -> WorkerCounts[tuple[str, str]]:
    """``BuyerStats``' counts by (event, label), written to the event's family."""
    return WorkerCounts(lambda key: (BUYER_EVENTS[key[0]], (key[1],)))


class MatchTableSizeCollector(Collector):
    """The match table's pairings by age (``fresh``, ``stale``) as last measured
    (``buyer/table_size.py``; every worker reads the same measurement, so any worker's answer
    is the fleet's)."""

    def __init__(self, sizes: MatchTableSizeLog) -> None:
        self._sizes = sizes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size = self._sizes.cached
        entries = GaugeMetricFamily(
            "cookiematch_buyer_match_table_entries",
            "Live match-table pairings by age (stale: older than match_ttl_days), as last measured",
            labels=["age"],
        )
        measured = GaugeMetricFamily(
            "cookiematch_buyer_match_table_measured_timestamp_seconds",
            "When the match table's pairings were last counted (unix time)",
        )
        if size is not None:
            entries.add_metric(["fresh"], size.entries - size.stale)
            entries.add_metric(["stale"], size.stale)
            measured.add_metric([], size.measured_at)
        yield entries
        yield measured
