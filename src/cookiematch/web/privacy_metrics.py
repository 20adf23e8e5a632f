"""The privacy policy's decisions at ``/metrics``, added up over the server's workers:
``cookiematch_privacy_decisions_total{operation, reason}`` (the reasons of docs/privacy.md)."""

from __future__ import annotations

from cookiematch.privacy.policy import Operation, Reason
from cookiematch.web.counters import LabelledCounter, WorkerCounts

__all__ = ["PRIVACY_DECISIONS", "decision_counts"]

PRIVACY_DECISIONS = LabelledCounter(
    "cookiematch_privacy_decisions",
    "What the privacy policy answered, by operation and reason",
    ("operation", "reason"),
)


def decision_counts() -> WorkerCounts[tuple[Operation, Reason]]:
    """A ``PrivacyPolicy``'s ``counts``, written to ``PRIVACY_DECISIONS``."""
    return WorkerCounts(lambda key: (PRIVACY_DECISIONS, (key[0].value, key[1].value)))
