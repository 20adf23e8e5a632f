"""Prometheus counters of the browser-facing routes, and ``/metrics`` that serves them."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cookiematch.exchange.outcomes import RedirectToBuyer
from cookiematch.web.counters import LabelledCounter

PIXEL_OUTCOMES = LabelledCounter(
    "cookiematch_pixel_outcomes",
    "Match tags answered, by buyer and outcome (redirect, error_<code>, set_cookie, push)",
    ("nid", "outcome"),
)
BAD_REQUESTS = LabelledCounter(
    "cookiematch_bad_requests",
    "Browser requests answered 400, by reason",
    ("reason",),
)
EXTRAS_DROPPED = LabelledCounter(
    "cookiematch_extras_dropped",
    "Match tags whose extra parameters exceeded 1 KiB and were not forwarded",
    ("nid",),
)
HOSTED_MATCH_FAILURES = LabelledCounter(
    "cookiematch_hosted_match_failures",
    "Hosted match writes refused or failed, by buyer and google_hm status",
    ("nid", "status"),
)


def record_redirect(outcome: RedirectToBuyer) -> None:
    label = "redirect" if outcome.error is None else f"error_{outcome.error}"
    PIXEL_OUTCOMES.inc((outcome.nid, label))
    if outcome.extras_dropped:
        EXTRAS_DROPPED.inc((outcome.nid,))
    if outcome.hosted_match_status is not None:
        HOSTED_MATCH_FAILURES.inc((outcome.nid, str(outcome.hosted_match_status)))


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


async def _metrics(_: Request) -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)


METRICS_ROUTE = Route("/metrics", _metrics, methods=["GET"])
"""``GET /metrics``: the exposition, on a role's admin listener (no token)."""
