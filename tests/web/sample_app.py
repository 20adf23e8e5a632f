"""A demo App for the adapter tests: hot routes of every kind plus a Starlette fallback.

Served in-process (ASGI) and in real granian processes (``sample_app:make_app``), so it must
be importable with tests/web on sys.path. ``SAMPLE_MARKER`` (env) names a file the startup and
shutdown hooks append to.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route as StarletteRoute

from cookiematch.web.http import Request, Response
from cookiematch.web.router import Answer, App, DirectHeaders, Pending
from cookiematch.web.server import config_path

COOKIES = (
    "uid=abc123; Max-Age=3600; Path=/; Secure; HttpOnly; SameSite=None",
    "seen=1; Path=/",
)


async def match(request: Request) -> Response:
    return Response.redirect("https://buyer.example/cm?google_gid=abc&google_cver=1", COOKIES)


async def broken_pixel(request: Request) -> Response:
    raise RuntimeError("bug in a pixel handler")


async def inject(request: Request) -> Response:
    return Response.redirect("https://buyer.example/\r\nSet-Cookie: evil=1")


async def echo(request: Request) -> Response:
    return Response.json(
        200,
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "scheme": request.scheme,
            "client": request.client,
            "cookie": request.cookie_header,
            "x_test": request.header("X-Test"),
            "has_x_test": "x-test" in request.headers,
            "body": request.body.decode(),
        },
    )


SUM_HEADERS = Response.text(200, "").headers


def sum_direct(body: bytes) -> Answer | Awaitable[Answer | None] | None:
    """``/sum``'s common case from the body alone: digits separated by ``+``, answered at once,
    or after awaiting when the body starts with ``later `` (None: the handler answers; ``boom``
    raises, as a broken direct path would)."""
    if body == b"boom":
        raise RuntimeError("bug in a direct path")
    if body.startswith(b"later "):
        return _sum_later(body.removeprefix(b"later "))
    parts = body.split(b"+")
    if not all(part.isdigit() for part in parts):
        return None
    return 200, SUM_HEADERS, f"direct {sum(map(int, parts))}".encode()


async def _sum_later(body: bytes) -> Answer | None:
    answer = sum_direct(body)
    return None if answer is None or not isinstance(answer, tuple) else answer


async def sum_handler(request: Request) -> Response:
    """``/sum`` as the ASGI adapter serves it, and the rest under RSGI."""
    answer = sum_direct(request.body)
    if answer is not None and not isinstance(answer, tuple):
        answer = await answer
    if answer is not None:
        return Response(200, SUM_HEADERS, answer[2])
    return Response.text(400, f"not a sum: {request.body.decode(errors='replace')}")


def later_direct(scope: Any) -> Pending | None:
    """``/later``'s common case, answered after awaiting (a ``Pending``): ``?n=<digits>``
    redirects with ``n``; ``?boom`` fails while awaited; anything else is the handler's."""
    query = scope.query_string
    if query != "boom" and not (query.startswith("n=") and query[2:].isdigit()):
        return None
    return _later(query)


async def _later(query: str) -> DirectHeaders:
    await asyncio.sleep(0)  # a write's acknowledgement
    if query == "boom":
        raise RuntimeError("bug in a pending direct path")
    return [("Location", f"https://buyer.example/later?{query}"), ("Cache-Control", "no-store")]


async def later_handler(request: Request) -> Response:
    """``/later`` as the ASGI adapter serves it, and the rest under RSGI."""
    if request.query == "boom" or request.query.startswith("n="):
        headers = await _later(request.query)
        return Response.redirect(dict(headers)["Location"])
    return Response.text(200, "not later\n")


async def trivial(request: Request) -> Response:
    return Response.redirect("https://buyer.example/cm")


def _hooks(app: App, state: dict[str, Any]) -> None:
    marker = os.environ.get("SAMPLE_MARKER")

    async def started() -> None:
        state["started"] = True
        if marker:
            with open(marker, "a") as f:
                f.write("startup\n")

    async def stopped() -> None:
        if marker:
            with open(marker, "a") as f:
                f.write("shutdown\n")

    app.on_startup.append(started)
    app.on_shutdown.append(stopped)


def _admin() -> Starlette:
    async def ping(request: StarletteRequest) -> JSONResponse:
        client = request.client
        return JSONResponse({"pong": True, "client": client.host if client else None})

    async def post_echo(request: StarletteRequest) -> PlainTextResponse:
        body = await request.body()
        return PlainTextResponse(body, headers={"X-Length": str(len(body))})

    async def stream(request: StarletteRequest) -> StreamingResponse:
        async def chunks() -> Any:
            for i in range(5):
                yield f"chunk{i};".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    async def big_stream(request: StarletteRequest) -> StreamingResponse:
        async def chunks() -> Any:
            for i in range(100):
                yield bytes([65 + i % 26]) * 1024

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def boom(request: StarletteRequest) -> PlainTextResponse:
        raise RuntimeError("admin bug")

    return Starlette(
        routes=[
            StarletteRoute("/admin/ping", ping),
            StarletteRoute("/admin/echo", post_echo, methods=["POST"]),
            StarletteRoute("/admin/stream", stream),
            StarletteRoute("/admin/bigstream", big_stream),
            StarletteRoute("/admin/boom", boom),
        ]
    )


def make_app() -> App:
    app = App(fallback=_admin())
    state: dict[str, Any] = {}
    app.route("/match", match, on_error=Response.text(400, "bad request\n"))
    app.route("/broken.gif", broken_pixel)
    app.route("/inject", inject, on_error=Response.text(400, "bad request\n"))
    app.route("/echo", echo, methods=("GET", "POST"), read_body=True)
    app.route("/callback/", echo, prefix=True)
    app.route("/bench", trivial)
    app.route(
        "/sum",
        sum_handler,
        methods=("POST",),
        on_error=Response.text(400, "bad request\n"),
        read_body=True,
        direct_body=sum_direct,
    )

    app.route("/later", later_handler, direct=later_direct)

    async def errors(request: Request) -> Response:
        return Response.json(200, {"errors": dict(app.handler_errors), **state})

    app.route("/errors", errors)
    _hooks(app, state)
    return app


def make_bare_app() -> App:
    """Hot routes only: unknown paths are a plain 404."""
    app = App()
    app.route("/match", match)
    app.route("/bench", trivial)
    return app


def make_config_app() -> App:
    """Answers its config path (from ``COOKIEMATCH_CONFIG``) on /config."""
    path = config_path() or ""

    async def show(request: Request) -> Response:
        return Response.text(200, path)

    app = App()
    app.route("/config", show)
    return app


def make_failing_app() -> App:
    """An App whose startup hook fails (e.g. the store is unreachable)."""

    async def unreachable() -> None:
        raise ConnectionRefusedError("store unreachable")

    app = App(on_startup=[unreachable])
    app.route("/match", match)
    return app


def make_slow_app() -> App:
    """/slow answers after 1 s; the shutdown hook records what had finished by then."""
    import asyncio

    marker = os.environ["SAMPLE_MARKER"]

    async def slow(request: Request) -> Response:
        await asyncio.sleep(1.0)
        with open(marker, "a") as f:
            f.write("slow done\n")
        return Response.no_content()

    async def stopped() -> None:
        with open(marker, "a") as f:
            f.write("shutdown\n")

    app = App(on_shutdown=[stopped])
    app.route("/slow", slow)
    return app
