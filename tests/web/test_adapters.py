"""The same HTTP assertions over three transports of one App (tests/web/sample_app.py):

- ``inproc``: the ASGI adapter in-process through httpx.ASGITransport;
- ``rsgi``: a real granian process on the RSGI interface (production default);
- ``asgi``: a real granian process on its ASGI interface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from sample_app import make_app, trivial

from cookiematch.protocol.pixel import TRANSPARENT_GIF
from cookiematch.web.asgi import ASGIAdapter
from cookiematch.web.router import App

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def servers(start_module_server: Callable[..., object]) -> dict[str, str]:
    """One real server per interface, shared by the module; their base URLs."""
    urls = {}
    for interface in ("rsgi", "asgi"):
        server = start_module_server(
            factory="sample_app:make_app", interface=interface, pythonpath=[HERE]
        )
        urls[interface] = server.url  # type: ignore[attr-defined]
    return urls


@pytest.fixture(params=["inproc", "rsgi", "asgi"])
async def client(
    request: pytest.FixtureRequest, servers: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    if request.param == "inproc":
        app = make_app()
        await app.startup()
        transport = httpx.ASGITransport(app=ASGIAdapter(app), client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c
        await app.shutdown()
    else:
        async with httpx.AsyncClient(base_url=servers[request.param]) as c:
            yield c


async def test_redirect_with_cookies(client: httpx.AsyncClient) -> None:
    r = await client.get("/match")
    assert r.status_code == 302
    assert r.headers["location"] == "https://buyer.example/cm?google_gid=abc&google_cver=1"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers.get_list("set-cookie") == [
        "uid=abc123; Max-Age=3600; Path=/; Secure; HttpOnly; SameSite=None",
        "seen=1; Path=/",
    ]
    assert r.content == b""


async def test_head_is_allowed_with_get(client: httpx.AsyncClient) -> None:
    r = await client.head("/match")
    assert r.status_code == 302
    assert r.headers["location"].startswith("https://buyer.example/")


async def test_broken_pixel_answers_gif_200(client: httpx.AsyncClient) -> None:
    before = (await client.get("/errors")).json()["errors"].get("/broken.gif", 0)
    r = await client.get("/broken.gif")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/gif"
    assert r.headers["cache-control"] == "no-store"
    assert r.content == TRANSPARENT_GIF
    after = (await client.get("/errors")).json()
    assert after["errors"]["/broken.gif"] == before + 1
    assert after["started"] is True  # on_startup ran


async def test_header_injection_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.get("/inject")
    assert r.status_code == 400
    assert "location" not in r.headers
    assert "set-cookie" not in r.headers
    assert r.text == "bad request\n"


async def test_request_fields(client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/echo?google_nid=x&u=%2Fa%20b&flag",
        headers=[("Cookie", "a=1; b=2"), ("Cookie", "c=3"), ("X-Test", "yes")],
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "method": "GET",
        "path": "/echo",
        "query": "google_nid=x&u=%2Fa%20b&flag",
        "scheme": "http",
        "client": "127.0.0.1",
        "cookie": "a=1; b=2; c=3",
        "x_test": "yes",
        "has_x_test": True,
        "body": "",
    }


async def test_hot_route_body(client: httpx.AsyncClient) -> None:
    r = await client.post("/echo", content=b"payload=1")
    assert r.json()["body"] == "payload=1"
    assert r.json()["method"] == "POST"


async def test_body_too_large(client: httpx.AsyncClient) -> None:
    r = await client.post("/echo", content=b"x" * (64 * 1024 + 1))
    assert r.status_code == 413


async def test_direct_body_route(client: httpx.AsyncClient) -> None:
    """A body route's ``direct_body`` (RSGI) and its handler (ASGI) answer alike, whether the
    direct path answers at once or gives an awaitable; one that gives None leaves the request
    to the handler; one that raises is counted and
    answered with the route's on_error; the body limit holds first."""
    r = await client.post("/sum", content=b"1+2+39")
    assert (r.status_code, r.text, r.headers["content-type"]) == (
        200,
        "direct 42",
        "text/plain; charset=utf-8",
    )
    assert r.headers["cache-control"] == "no-store"
    r = await client.post("/sum", content=b"later 1+2+39")  # an awaitable answer
    assert (r.status_code, r.text) == (200, "direct 42")
    r = await client.post("/sum", content=b"1+x")
    assert (r.status_code, r.text) == (400, "not a sum: 1+x")
    r = await client.post("/sum", content=b"later 1+x")  # None, awaited
    assert (r.status_code, r.text) == (400, "not a sum: later 1+x")
    before = (await client.get("/errors")).json()["errors"].get("/sum", 0)
    r = await client.post("/sum", content=b"boom")
    assert (r.status_code, r.text) == (400, "bad request\n")
    assert (await client.get("/errors")).json()["errors"]["/sum"] == before + 1
    r = await client.post("/sum", content=b"1" * (64 * 1024 + 1))
    assert r.status_code == 413


async def test_direct_route_that_awaits(client: httpx.AsyncClient) -> None:
    """A route's ``direct`` may answer a ``Pending`` (RSGI awaits it, then sends its 302): it
    answers as the handler does (ASGI); None leaves the request to the handler; one that
    raises while awaited is counted and answered with the route's on_error."""
    r = await client.get("/later?n=42")
    assert (r.status_code, r.headers["location"]) == (302, "https://buyer.example/later?n=42")
    assert r.headers["cache-control"] == "no-store"
    r = await client.get("/later?x=1")
    assert (r.status_code, r.text) == (200, "not later\n")
    before = (await client.get("/errors")).json()["errors"].get("/later", 0)
    r = await client.get("/later?boom")
    assert (r.status_code, r.content) == (200, TRANSPARENT_GIF)
    assert (await client.get("/errors")).json()["errors"]["/later"] == before + 1


def test_direct_body_needs_read_body() -> None:
    app = App()

    async def direct(body: bytes) -> None:
        return None

    with pytest.raises(ValueError, match="direct_body needs read_body"):
        app.route("/x", trivial, methods=("POST",), direct_body=direct)


async def test_prefix_route(client: httpx.AsyncClient) -> None:
    r = await client.get("/callback/partner-7?id=1")
    assert r.json()["path"] == "/callback/partner-7"
    assert r.json()["query"] == "id=1"


async def test_method_not_allowed(client: httpx.AsyncClient) -> None:
    r = await client.post("/match")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"


async def test_unknown_path_goes_to_fallback(client: httpx.AsyncClient) -> None:
    r = await client.get("/nope")
    assert r.status_code == 404


async def test_fallback_get(client: httpx.AsyncClient) -> None:
    r = await client.get("/admin/ping")
    assert r.status_code == 200
    assert r.json() == {"pong": True, "client": "127.0.0.1"}


async def test_fallback_post_round_trip(client: httpx.AsyncClient) -> None:
    body = bytes(range(256)) * 300  # binary, 76 KB
    r = await client.post("/admin/echo", content=body)
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["x-length"] == str(len(body))


async def test_fallback_streaming(client: httpx.AsyncClient) -> None:
    r = await client.get("/admin/stream")
    assert r.status_code == 200
    assert r.text == "chunk0;chunk1;chunk2;chunk3;chunk4;"


async def test_fallback_large_stream(client: httpx.AsyncClient) -> None:
    r = await client.get("/admin/bigstream")
    assert r.status_code == 200
    assert r.content == b"".join(bytes([65 + i % 26]) * 1024 for i in range(100))


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
async def test_fallback_exception_is_a_500(interface: str, servers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=servers[interface]) as c:
        r = await c.get("/admin/boom")
        assert r.status_code == 500  # admin API, not browser-facing
        assert (await c.get("/match")).status_code == 302  # the worker lives on


async def test_fallback_method_not_allowed(client: httpx.AsyncClient) -> None:
    r = await client.get("/admin/echo")
    assert r.status_code == 405


async def test_https_scheme_inproc() -> None:
    transport = httpx.ASGITransport(app=ASGIAdapter(make_app()))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        assert (await c.get("/echo")).json()["scheme"] == "https"
