"""Both adapters count and time every answer by route and status (``web/http_metrics.py``):
hot routes by path (a prefix route by its prefix), the fallback app's by its route template,
the rest as ``unmatched``. RSGI through real servers: ``test_metrics_workers.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sample_app import make_app, make_bare_app

from cookiematch.web.asgi import ASGIAdapter
from cookiematch.web.http_metrics import DURATION, RESPONSES
from cookiematch.web.router import App


@pytest.fixture(params=[make_app, make_bare_app], ids=["with_fallback", "bare"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    app: App = request.param()
    await app.startup()
    transport = httpx.ASGITransport(app=ASGIAdapter(app), client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
    await app.shutdown()


async def counted(client: httpx.AsyncClient, path: str, route: str) -> tuple[int, float, float]:
    """``path``'s status, and how much its answer added to (route, status) and to route's
    timings."""
    before = {status: RESPONSES.value((route, status)) for status in (200, 302, 404)}
    timed = DURATION.count((route,))
    status = (await client.get(path)).status_code
    return (
        status,
        RESPONSES.value((route, status)) - before.get(status, 0),
        DURATION.count((route,)) - timed,
    )


async def test_a_hot_route_is_counted_by_its_path(client: httpx.AsyncClient) -> None:
    assert await counted(client, "/match?x=1", "/match") == (302, 1, 1)


async def test_a_404_is_unmatched(client: httpx.AsyncClient) -> None:
    assert await counted(client, "/no/such/path", "unmatched") == (404, 1, 1)


async def test_the_fallback_is_counted_by_its_route() -> None:
    app = make_app()
    await app.startup()
    transport = httpx.ASGITransport(app=ASGIAdapter(app), client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert await counted(http, "/admin/ping", "/admin/ping") == (200, 1, 1)
        assert await counted(http, "/callback/anything", "/callback/") == (200, 1, 1)
    await app.shutdown()
