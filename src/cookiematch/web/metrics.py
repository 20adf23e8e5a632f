"""``GET /metrics``: every metric of the server, added up over its workers (``web/counters.py``),
in the Prometheus text format or, when ``Accept`` asks for it, OpenMetrics. Not the
``process_*`` and ``python_gc_*`` families of ``prometheus_client``: they describe the one
worker that answers the scrape (``python_info`` stays, the same in every worker).

Served by each role's admin application on the role's listener; ``[metrics] access`` says who
may read it: ``open`` (anyone who reaches the listener, the default) or ``token`` (the role's
admin token as a bearer token; without a token configured, nobody). The families themselves
live with what they count (``web/http_metrics.py``, ``web/exchange/metrics.py``,
``web/buyer/metrics.py``, ``web/privacy_metrics.py``, ``web/store_metrics.py``).
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PROCESS_COLLECTOR,
    REGISTRY,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cookiematch.config import Secret
from cookiematch.config.schema import MetricsAccess
from cookiematch.web.admin import bearer_authorized, problem

__all__ = ["METRICS_PATH", "BuildInfo", "exposition", "metrics_route"]

METRICS_PATH = "/metrics"


def _version() -> str:
    try:
        return version("cookiematch")
    except PackageNotFoundError:
        return "unknown"


class BuildInfo(Collector):
    """``cookiematch_build_info{version, python} 1``."""

    def __init__(self) -> None:
        self.labels = (_version(), platform.python_version())

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "cookiematch_build_info",
            "The running build: cookiematch's version and Python's",
            labels=("version", "python"),
        )
        family.add_metric(self.labels, 1)
        yield family


REGISTRY.register(BuildInfo())
for _per_process in (PROCESS_COLLECTOR, GC_COLLECTOR):  # one worker's, whichever answered
    with contextlib.suppress(KeyError):
        REGISTRY.unregister(_per_process)


def exposition(
    accept: str | None = None, registry: CollectorRegistry = REGISTRY
) -> tuple[bytes, str]:
    """The exposition of every metric and its content type: OpenMetrics if ``accept`` names
    it, else the Prometheus text format."""
    if accept is not None and "application/openmetrics-text" in accept:
        body = openmetrics.generate_latest(registry)  # type: ignore[no-untyped-call]
        return body, openmetrics.CONTENT_TYPE_LATEST
    return generate_latest(registry), CONTENT_TYPE_LATEST


def metrics_route(access: MetricsAccess, admin_token: Secret | None) -> Route:
    """``GET /metrics`` as ``access`` says (``token``: the role's ``admin_token``)."""
    token = b"" if admin_token is None else admin_token.reveal().encode()

    async def metrics(request: Request) -> Response:
        if access == "token" and not bearer_authorized(request.scope, token):
            detail = "a valid 'Authorization: Bearer <admin token>' header is required"
            return problem(401, detail, headers={"WWW-Authenticate": "Bearer"})
        body, content_type = exposition(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    return Route(METRICS_PATH, metrics, methods=["GET"])
