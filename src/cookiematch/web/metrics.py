"""``GET /metrics``: every metric of the server, added up over its workers (``web/counters.py``),
in the Prometheus text format or, when ``Accept`` asks for it, OpenMetrics. Not the
``process_*`` and ``python_gc_*`` families of ``prometheus_client``: they describe the one
worker that answers the scrape (``python_info`` stays, the same in every worker).

Served by each role's admin application on the role's listener, or, with ``[metrics]
<role>_listen``, only on a listener of its own (``MetricsListener``: every worker binds it
with ``SO_REUSEPORT``, any of them answers for all). ``[metrics] access`` says who may read
it: ``open`` (anyone who reaches the listener, the default) or ``token`` (the role's admin
token as a bearer token; without a token configured, nobody). The families themselves live
with what they count (``web/http_metrics.py``, ``web/exchange/metrics.py``,
``web/buyer/metrics.py``, ``web/privacy_metrics.py``, ``web/outbound_metrics.py``,
``web/store_metrics.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from time import perf_counter

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

from cookiematch.config import Listen, Secret
from cookiematch.config.schema import MetricsAccess
from cookiematch.web.admin import bearer_authorized, problem
from cookiematch.web.http_metrics import record

__all__ = ["METRICS_PATH", "BuildInfo", "MetricsListener", "exposition", "metrics_route"]

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
UNAUTHORIZED = "a valid 'Authorization: Bearer <admin token>' header is required"


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


def _token(admin_token: Secret | None) -> bytes:
    return b"" if admin_token is None else admin_token.reveal().encode()


def metrics_route(access: MetricsAccess, admin_token: Secret | None) -> Route:
    """``GET /metrics`` as ``access`` says (``token``: the role's ``admin_token``)."""
    token = _token(admin_token)

    async def metrics(request: Request) -> Response:
        authorization = request.headers.get("authorization", "")
        if access == "token" and not bearer_authorized(authorization, token):
            return problem(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
        body, content_type = exposition(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    return Route(METRICS_PATH, metrics, methods=["GET"])


class MetricsListener:
    """``GET /metrics`` alone on ``listen``: HTTP/1.1, one request per connection, a head of
    at most 8 KiB read within 5 s. Every worker starts one on the same port."""

    HEAD_LIMIT = 8192
    HEAD_SECONDS = 5.0

    def __init__(self, listen: Listen, access: MetricsAccess, admin_token: Secret | None) -> None:
        self.listen = listen
        self.access = access
        self._token = _token(admin_token)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._answer, self.listen.host, self.listen.port, reuse_port=True,
            limit=self.HEAD_LIMIT,
        )  # fmt: skip

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = perf_counter()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.HEAD_SECONDS)
            status, headers, body = self._respond(head.decode("latin-1"))
            lines = [f"HTTP/1.1 {status} {_REASONS[status]}", *headers,
                     f"Content-Length: {len(body)}", "Connection: close", "", ""]  # fmt: skip
            writer.write("\r\n".join(lines).encode("latin-1") + body)
            await writer.drain()
            record(METRICS_PATH, status, perf_counter() - started)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that sends no head, half a head or too much: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _respond(self, head: str) -> tuple[int, list[str], bytes]:
        request_line, *header_lines = head.split("\r\n")
        method, _, rest = request_line.partition(" ")
        target = rest.partition(" ")[0]
        fields: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if target.partition("?")[0] != METRICS_PATH:
            return 404, ["Content-Type: text/plain"], b"not found\n"
        if method not in ("GET", "HEAD"):
            return 405, ["Allow: GET, HEAD", "Content-Type: text/plain"], b"method not allowed\n"
        if self.access == "token" and not bearer_authorized(
            fields.get("authorization", ""), self._token
        ):
            answer = problem(401, UNAUTHORIZED)
            return (
                401,
                ["Content-Type: application/problem+json", "WWW-Authenticate: Bearer"],
                (bytes(answer.body)),
            )
        body, content_type = exposition(fields.get("accept"))
        return 200, [f"Content-Type: {content_type}"], b"" if method == "HEAD" else body


_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
