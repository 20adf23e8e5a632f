"""Serve an ``App`` over granian's RSGI interface (the production default).

Hot routes: the RSGI scope becomes a ``Request`` without copying (granian's headers object is
passed through as ``Request.headers``) and the ``Response`` goes out with one
``response_bytes``/``response_empty`` call. Other paths go to the App's fallback ASGI app through
a minimal RSGI→ASGI bridge (HTTP only; no websockets, no lifespan: the App's hooks run from
``__rsgi_init__``/``__rsgi_del__``, which granian calls once per worker before serving and after
a graceful stop).

Note: granian percent-decodes ``scope.path`` and does not expose the raw path.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import Any, Protocol

# granian.rsgi re-exports it as ProtocolClosed, untyped
from granian._granian import RSGIProtocolClosed as ProtocolClosed

from cookiematch.web.drain import Drain
from cookiematch.web.http import HeaderPairs, Request, Response
from cookiematch.web.http_metrics import UNMATCHED, fallback_route, record
from cookiematch.web.router import (
    BAD_REQUEST,
    BODY_TOO_LARGE,
    NOT_FOUND,
    Answer,
    App,
    DirectHeaders,
    Message,
    Pending,
    Route,
)

__all__ = ["RSGIAdapter", "peer_ip"]

log = logging.getLogger("cookiematch.web")

_INTERNAL_ERROR = Response.text(500, "internal server error\n")
_CLOSE = ("connection", "close")


class _Transport(Protocol):
    async def send_bytes(self, data: bytes) -> None: ...


class _Proto(Protocol):
    """The part of granian's RSGIHTTPProtocol this adapter uses."""

    async def __call__(self) -> bytes: ...

    async def client_disconnect(self) -> None: ...

    def response_empty(self, status: int, headers: Any) -> None: ...

    def response_bytes(self, status: int, headers: Any, body: bytes) -> None: ...

    def response_stream(self, status: int, headers: Any) -> _Transport: ...


def peer_ip(client: str) -> str:
    """``"1.2.3.4:5678"`` -> ``"1.2.3.4"``, ``"[::1]:5678"`` -> ``"::1"``."""
    host = client.rpartition(":")[0]
    if host.startswith("["):
        return host[1:-1]
    return host


def _host_port(value: str) -> tuple[str, int] | None:
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        return None
    return (host[1:-1] if host.startswith("[") else host), int(port)


def _send(proto: _Proto, response: Response, drain: Drain) -> None:
    _answer(proto, response.status, response.headers, response.body, drain)


def _answer(proto: _Proto, status: int, headers: HeaderPairs, body: bytes, drain: Drain) -> None:
    if drain.active:  # the client learns with this answer that the connection ends
        headers = (*headers, _CLOSE)
        drain.answered()
    if body:
        proto.response_bytes(status, headers, body)
    else:
        proto.response_empty(status, headers)


def _closing(headers: list[tuple[str, str]], drain: Drain) -> list[tuple[str, str]]:
    if not drain.active:
        return headers
    drain.answered()
    return [*headers, _CLOSE]


class RSGIAdapter:
    """The RSGI application for ``app``: ``granian --interface rsgi`` serves an instance."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._routes = app.routes  # shared, not copied: routes added later are seen
        self._drain = app.drain

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.app.startup())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.app.shutdown())

    async def __call__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            proto.close(None)  # websockets are not served
            return
        started = perf_counter()
        path = scope.path
        route = self._routes.get(path)
        if route is None:
            route = self.app.match(path)
            if route is None:
                if self.app.fallback is not None:
                    await self._fallback(scope, proto, started)
                else:
                    _send(proto, NOT_FOUND, self._drain)
                    record(UNMATCHED, NOT_FOUND.status, perf_counter() - started)
                return
        try:
            method = scope.method
            if method not in route.methods:
                response = route.not_allowed
            elif route.direct is not None and (direct := self._direct(route, scope)) is not None:
                done = (
                    direct if isinstance(direct, list) else await self._settle(route, scope, direct)
                )
                if isinstance(done, Response):
                    response = done  # route.direct failed
                elif isinstance(done, tuple):  # a Pending's whole answer
                    status, headers, body = done
                    _answer(proto, status, headers, body, self._drain)
                    record(route.path, status, perf_counter() - started)
                    return
                else:
                    if self._drain.active:
                        done.append(_CLOSE)
                        self._drain.answered()
                    proto.response_empty(302, done)
                    record(route.path, 302, perf_counter() - started)
                    return
            elif route.read_body:
                answered = await self._with_body(route, scope, proto)
                if not isinstance(answered, Response):
                    status, headers, body = answered
                    _answer(proto, status, headers, body, self._drain)
                    record(route.path, status, perf_counter() - started)
                    return
                response = answered
            else:
                request = Request(
                    method, path, scope.query_string, scope.headers, scope.scheme,
                    peer_ip(scope.client),
                )  # fmt: skip
                response = await self.app.call(route, request)
        except ProtocolClosed:
            log.debug("client went away during %s", path)  # not an error: nobody to answer
            return
        except Exception:
            log.exception("RSGI adapter failed on %s", path)
            response = route.on_error
        _send(proto, response, self._drain)
        record(route.path, response.status, perf_counter() - started)

    def _direct(self, route: Route, scope: Any) -> DirectHeaders | Pending | Response | None:
        """``route.direct``'s headers, ``Pending`` or None; when it raises, ``route.on_error``
        (counted and logged as a handler's failure: ``App.failed``)."""
        assert route.direct is not None
        try:
            return route.direct(scope)
        except Exception as exc:
            return self.app.failed(route, scope.method, exc)

    async def _settle(
        self, route: Route, scope: Any, direct: Pending | Response
    ) -> DirectHeaders | Answer | Response:
        """A ``Pending``'s headers (or whole answer) once awaited; when it raises,
        ``route.on_error`` (as ``_direct``)."""
        if isinstance(direct, Response):
            return direct
        try:
            return await direct
        except ProtocolClosed:
            raise
        except Exception as exc:
            return self.app.failed(route, scope.method, exc)

    async def _with_body(self, route: Route, scope: Any, proto: _Proto) -> Response | Answer:
        """The handler's response, or ``route.direct_body``'s answer when it gives one."""
        limit = self.app.max_body
        length = scope.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return BODY_TOO_LARGE if length.isdigit() else BAD_REQUEST
        body = await proto()
        if len(body) > limit:
            return BODY_TOO_LARGE
        if route.direct_body is not None:
            try:
                answer = route.direct_body(body)
                if answer is not None and not isinstance(answer, tuple):
                    answer = await answer
            except Exception as exc:
                return self.app.failed(route, scope.method, exc)
            if answer is not None:
                return answer
        request = Request(
            scope.method, scope.path, scope.query_string, scope.headers, scope.scheme,
            peer_ip(scope.client), body,
        )  # fmt: skip
        return await self.app.call(route, request)

    async def _fallback(self, scope: Any, proto: _Proto, started: float) -> None:
        """Run the fallback ASGI app for one HTTP request (the RSGI→ASGI bridge)."""
        assert self.app.fallback is not None
        asgi_scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": scope.http_version,
            "method": scope.method,
            "scheme": scope.scheme,
            "path": scope.path,
            "root_path": "",
            "query_string": scope.query_string.encode("utf-8"),
            "headers": [
                (name.encode("latin-1"), value.encode("latin-1", "replace"))
                for name, value in scope.headers.items()
            ],
            "client": _host_port(scope.client),
            "server": _host_port(scope.server),
            "extensions": {},
        }
        bridge = _Bridge(proto, self._drain)
        try:
            await self.app.fallback(asgi_scope, bridge.receive, bridge.send)
        except Exception:
            log.exception("fallback app failed on %s %s", scope.method, scope.path)
            if not bridge.done and bridge.transport is None:
                _send(proto, _INTERNAL_ERROR, self._drain)
                bridge.status = _INTERNAL_ERROR.status
        else:
            if not bridge.done:
                if bridge.status is None:
                    log.error("fallback app returned without a response on %s", scope.path)
                    _send(proto, _INTERNAL_ERROR, self._drain)
                    bridge.status = _INTERNAL_ERROR.status
                elif bridge.transport is None:  # body never finished: send what we have
                    headers = _closing(bridge.headers, self._drain)
                    proto.response_bytes(bridge.status, headers, b"".join(bridge.chunks))
        if bridge.status is not None:
            record(fallback_route(asgi_scope), bridge.status, perf_counter() - started)


class _Bridge:
    """ASGI receive/send over one RSGI protocol object: buffered, streamed if ``more_body``."""

    __slots__ = (
        "chunks", "done", "drain", "headers", "proto", "received", "status", "transport",
    )  # fmt: skip

    def __init__(self, proto: _Proto, drain: Drain) -> None:
        self.proto = proto
        self.drain = drain
        self.received = False
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.transport: _Transport | None = None
        self.done = False

    async def receive(self) -> Message:
        if not self.received:
            self.received = True
            try:
                return {"type": "http.request", "body": await self.proto(), "more_body": False}
            except ProtocolClosed:
                return {"type": "http.disconnect"}
        await self.proto.client_disconnect()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            self.headers = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", ())
            ]
        elif kind == "http.response.body" and not self.done:
            if self.status is None:
                raise RuntimeError("http.response.body before http.response.start")
            body = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if self.transport is not None:
                if body:
                    await self.transport.send_bytes(body)
                self.done = not more
            elif more:
                if body:
                    self.chunks.append(body)
                if sum(map(len, self.chunks)) > 64 * 1024:  # large or endless: start streaming
                    headers = _closing(self.headers, self.drain)
                    self.transport = self.proto.response_stream(self.status, headers)
                    await self.transport.send_bytes(b"".join(self.chunks))
                    self.chunks.clear()
            else:
                self.chunks.append(body)
                headers = _closing(self.headers, self.drain)
                self.proto.response_bytes(self.status, headers, b"".join(self.chunks))
                self.done = True
