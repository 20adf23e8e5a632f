"""Every outbound HTTP call (``web/outbound.py``), by kind and destination host:
``cookiematch_outbound_requests_total{kind, host, outcome}`` (outcome: the status code,
``timeout`` or ``error``) and ``cookiematch_outbound_request_seconds{kind, host}``.

Kinds: ``bid`` and ``win_notice`` (the exchange to buyers), ``optout_notice`` (the exchange to
buyers' webhooks), ``partner`` (the DMP's exports and pulls). ``host`` is the URL's host
and port (never its user or password). Most hosts are configured (buyers, destinations), but a
win notice goes where the winning bid's ``nurl`` says: so a worker labels at most
``MAX_HOSTS_PER_KIND`` hosts of each kind, and calls to any further host as ``other``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from cookiematch.web.counters import LabelledCounter, LabelledHistogram

__all__ = ["MAX_HOSTS_PER_KIND", "OUTBOUND_REQUESTS", "OUTBOUND_SECONDS", "record_outbound"]

MAX_HOSTS_PER_KIND = 64
OTHER_HOST = "other"
_labelled: dict[str, set[str]] = {}  # kind -> the hosts this worker labels

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


def _host_label(kind: str, url: str) -> str:
    try:
        host = urlsplit(url).netloc.rpartition("@")[2].lower() or "unknown"  # no user:password
    except ValueError:
        return "unknown"
    hosts = _labelled.setdefault(kind, set())
    if host in hosts:
        return host
    if len(hosts) >= MAX_HOSTS_PER_KIND:
        return OTHER_HOST
    hosts.add(host)
    return host


def record_outbound(kind: str, url: str, outcome: str | int, seconds: float) -> None:
    host = _host_label(kind, url)
    OUTBOUND_REQUESTS.inc((kind, host, outcome))
    OUTBOUND_SECONDS.observe((kind, host), seconds)
