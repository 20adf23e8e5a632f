"""The buyer's counters (``BuyerStats``) exposed to Prometheus at ``/metrics``.

One counter family per event, ``cookiematch_buyer_<event>_total{outcome=...}``, read from the
same ``BuyerStats`` the admin API shows, so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from cookiematch.buyer.stats import EVENTS, BuyerStats


class BuyerStatsCollector(Collector):
    def __init__(self, stats: BuyerStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        snapshot = self._stats.snapshot()
        for event, description in EVENTS.items():
            family = CounterMetricFamily(
                f"cookiematch_buyer_{event}", description, labels=["outcome"]
            )
            for label, count in snapshot[event].items():
                family.add_metric([label], count)
            yield family
