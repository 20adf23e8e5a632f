"""Serve an ``App`` over ASGI (granian's ASGI interface, uvicorn, httpx.ASGITransport in tests).

Hot routes are answered directly from the ``Request``/``Response`` values; any other HTTP or
websocket scope goes to the App's fallback ASGI app. Lifespan startup/shutdown run the App's
hooks (the fallback app's own lifespan is not run).
"""

from __future__ import annotations

import logging
from time import perf_counter

from cookiematch.web.drain import Drain
from cookiematch.web.http import Headers, Request, Response
from cookiematch.web.http_metrics import UNMATCHED, fallback_route, record
from cookiematch.web.router import (
    BAD_REQUEST,
    BODY_TOO_LARGE,
    NOT_FOUND,
    App,
    ASGIApp,
    Message,
    Receive,
    Route,
    Scope,
    Send,
)

__all__ = ["ASGIAdapter"]

log = logging.getLogger("cookiematch.web")


_CLOSE = (b"connection", b"close")


async def _send(send: Send, response: Response) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in response.headers],
        }
    )
    await send({"type": "http.response.body", "body": response.body})


def _closing(send: Send, drain: Drain) -> Send:
    """``send`` with ``Connection: close`` added to the answer's head (``web/drain.py``)."""

    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
            drain.answered()
        await send(message)

    return closing


class ASGIAdapter:
    """The ASGI application for ``app``."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        started = perf_counter()
        if self.app.drain.active and kind == "http":
            send = _closing(send, self.app.drain)
        if kind == "http":
            route = self.app.match(scope["path"])
            if route is not None:
                try:
                    response = await self._hot(route, scope, receive)
                except Exception:
                    log.exception("ASGI adapter failed on %s", scope["path"])
                    response = route.on_error
                await _send(send, response)
                record(route.path, response.status, perf_counter() - started)
                return
        elif kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.app.fallback is not None and kind == "http":
            await self._fallback(self.app.fallback, scope, receive, send, started)
        elif self.app.fallback is not None:
            await self.app.fallback(scope, receive, send)
        elif kind == "http":
            await _send(send, NOT_FOUND)
            record(UNMATCHED, NOT_FOUND.status, perf_counter() - started)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    @staticmethod
    async def _fallback(
        app: ASGIApp, scope: Scope, receive: Receive, send: Send, started: float
    ) -> None:
        status: int | None = None

        async def noting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, noting_send)
        finally:
            if status is not None:
                record(fallback_route(scope), status, perf_counter() - started)

    async def _hot(self, route: Route, scope: Scope, receive: Receive) -> Response:
        method = scope["method"]
        if method not in route.methods:
            return route.not_allowed
        headers = Headers.from_asgi(scope["headers"])
        body = b""
        if route.read_body:
            limit = self.app.max_body
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                return BODY_TOO_LARGE if length.isdigit() else BAD_REQUEST
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return BAD_REQUEST  # client went away
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return BODY_TOO_LARGE
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
        client = scope.get("client")
        request = Request(
            method,
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            scope.get("scheme", "http"),
            client[0] if client else "",
            body,
        )
        return await self.app.call(route, request)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.app.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.app.shutdown()
                except Exception as exc:
                    await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return
