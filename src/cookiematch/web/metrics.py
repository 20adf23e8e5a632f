"""Prometheus counters of the browser-facing routes (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from cookiematch.exchange.outcomes import RedirectToBuyer

PIXEL_OUTCOMES = Counter(
    "cookiematch_pixel_outcomes",
    "Match tags answered, by buyer and outcome (redirect, error_<code>, set_cookie, push)",
    ["nid", "outcome"],
)
BAD_REQUESTS = Counter(
    "cookiematch_bad_requests",
    "Browser requests answered 400, by reason",
    ["reason"],
)
EXTRAS_DROPPED = Counter(
    "cookiematch_extras_dropped",
    "Match tags whose extra parameters exceeded 1 KiB and were not forwarded",
    ["nid"],
)
HOSTED_MATCH_FAILURES = Counter(
    "cookiematch_hosted_match_failures",
    "Hosted match writes refused or failed, by buyer and google_hm status",
    ["nid", "status"],
)


def record_redirect(outcome: RedirectToBuyer) -> None:
    label = "redirect" if outcome.error is None else f"error_{outcome.error}"
    PIXEL_OUTCOMES.labels(nid=outcome.nid, outcome=label).inc()
    if outcome.extras_dropped:
        EXTRAS_DROPPED.labels(nid=outcome.nid).inc()
    if outcome.hosted_match_status is not None:
        HOSTED_MATCH_FAILURES.labels(nid=outcome.nid, status=str(outcome.hosted_match_status)).inc()


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
