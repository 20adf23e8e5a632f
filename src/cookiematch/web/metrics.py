"""``GET /metrics``: the Prometheus exposition of every registered metric, served by each role's
admin listener without a token. The counters themselves live with their role
(``web/exchange/metrics.py``, ``web/buyer/metrics.py``)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["METRICS_ROUTE", "exposition"]


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


async def _metrics(_: Request) -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)


METRICS_ROUTE = Route("/metrics", _metrics, methods=["GET"])
