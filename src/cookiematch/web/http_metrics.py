"""Every role's HTTP answers: ``cookiematch_http_responses_total{route,status}`` and
``cookiematch_http_request_duration_seconds{route}``, recorded by the adapters (``web/rsgi.py``,
``web/asgi.py``) for hot routes and for the admin application behind them.

``route`` is bounded: a hot route's path (a prefix route's prefix), an admin route's template
(``/admin/v1/buyers/{nid}``), or ``unmatched`` (a 404, or refused before routing).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from cookiematch.web.counters import SHARED, LabelledCounter, LabelledHistogram, ResponseMeter

__all__ = ["DURATION", "RESPONSES", "UNMATCHED", "fallback_route", "record"]

UNMATCHED = "unmatched"

RESPONSES = LabelledCounter(
    "cookiematch_http_responses",
    "HTTP responses, by route and status",
    ("route", "status"),
)
DURATION = LabelledHistogram(
    "cookiematch_http_request_duration_seconds",
    "Time from a request's head to its answer, by route",
    ("route",),
)

record = ResponseMeter(RESPONSES, DURATION, SHARED).record
"""``record(route, status, seconds)``: one answer, ``seconds`` after its request arrived."""


def fallback_route(scope: MutableMapping[str, Any]) -> str:
    """The template of the admin route that served ``scope`` (Starlette's router notes it)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
