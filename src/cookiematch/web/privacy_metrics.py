"""The privacy policy's decisions of this process, exposed at ``/metrics``:
``cookiematch_privacy_decisions_total{operation, reason}`` (the reasons of docs/privacy.md)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from cookiematch.privacy.policy import PrivacyPolicy

__all__ = ["PrivacyDecisions"]


class PrivacyDecisions(Collector):
    def __init__(self, policy: PrivacyPolicy) -> None:
        self._policy = policy

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "cookiematch_privacy_decisions",
            "What the privacy policy answered, by operation and reason",
            labels=["operation", "reason"],
        )
        for (operation, reason), count in list(self._policy.counts.items()):
            family.add_metric([operation.value, reason.value], count)
        yield family
