"""Every outbound HTTP call (``web/outbound.py``), by kind and destination host:
``cookiematch_outbound_requests_total{kind, host, outcome}`` (outcome: the status code,
``timeout`` or ``error``) and ``cookiematch_outbound_request_seconds{kind, host}``.

Kinds: ``bid`` and ``win_notice`` (the exchange to buyers), ``optout_notice`` (the exchange to
buyers' webhooks), ``partner`` (the DMP's exports and pulls). Hosts are those configured
(buyers, destinations), so the labels stay bounded.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from cookiematch.web.counters import LabelledCounter, LabelledHistogram

__all__ = ["OUTBOUND_REQUESTS", "OUTBOUND_SECONDS", "record_outbound"]

OUTBOUND_REQUESTS = LabelledCounter(
    "cookiematch_outbound_requests",
    "Outbound HTTP requests, by kind, destination host and outcome (status, timeout, error)",
    ("kind", "host", "outcome"),
)
OUTBOUND_SECONDS = LabelledHistogram(
    "cookiematch_outbound_request_seconds",
    "Time to an outbound HTTP request's answer or failure, by kind and destination host",
    ("kind", "host"),
)


def record_outbound(kind: str, url: str, outcome: str | int, seconds: float) -> None:
    host = urlsplit(url).netloc or "unknown"
    OUTBOUND_REQUESTS.inc((kind, host, outcome))
    OUTBOUND_SECONDS.observe((kind, host), seconds)
