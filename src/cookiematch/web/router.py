"""The application value both adapters serve: hot routes, a fallback ASGI app, lifecycle hooks.

Hot routes map an exact path (or a path prefix) to a ``Handler``; the adapters call them
directly, no framework in between. Everything else (admin API, ``/metrics``) goes to the
optional ``fallback`` ASGI application, e.g. Starlette; with no fallback it is a 404.

Errors on hot routes. A browser-facing endpoint never answers 500 and never redirects
anywhere unplanned, so ``App.call`` catches any exception a handler raises (including the
``ValueError`` of a ``Response`` refusing an injected header), logs it with its traceback
(not a StoreUnavailable: the store's guard logs an outage once), counts it in
``App.handler_errors[route.path]``, calls ``App.on_handler_error`` if set (for metrics), and
answers the route's ``on_error`` response instead. The default ``on_error`` is a 1x1 GIF
with status 200: a broken pixel must never break the page that embeds it. Routes that are not
image loads choose their own (e.g. ``Response.text(400, ...)``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from cookiematch.errors import StoreUnavailable
from cookiematch.web.drain import Drain
from cookiematch.web.http import Handler, HeaderPairs, Request, Response

__all__ = [
    "ASGIApp", "Answer", "App", "Direct", "DirectBody", "DirectHeaders", "Hook", "Pending", "Route",
]  # fmt: skip

log = logging.getLogger("cookiematch.web")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]
DirectHeaders = list[tuple[str, str]]
"""The headers of a direct 302 (the Location already safe by construction)."""
Answer = tuple[int, HeaderPairs, bytes]
"""A status, headers built (and checked, as a ``Response``'s) once, and a body (b"": none)."""
Pending = Awaitable[DirectHeaders | Answer]
"""A direct answer that awaits first (a durable write): its 302's headers once done, or the
whole answer (a pixel with its cookie)."""
Direct = Callable[[Any], DirectHeaders | Pending | None]
"""A route's common case answered straight from the RSGI scope: the headers of its 302, a
``Pending`` the adapter awaits for them (or for a whole answer), or None (nothing done) when
the handler answers the request."""
DirectBody = Callable[[bytes], Answer | Awaitable[Answer | None] | None]
"""A body route's answer straight from the request body (under RSGI): at once, or an awaitable
the adapter awaits for it; None (at once or awaited) when the handler answers the request."""

PIXEL_ON_ERROR = Response.pixel()
NOT_FOUND = Response.text(404, "not found\n")
BODY_TOO_LARGE = Response.text(413, "request body too large\n")
BAD_REQUEST = Response.text(400, "bad request\n")
DEFAULT_MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class Route:
    """One hot route. ``methods`` always includes HEAD when it includes GET."""

    path: str
    handler: Handler
    methods: frozenset[str]
    on_error: Response = PIXEL_ON_ERROR
    prefix: bool = False
    read_body: bool = False
    direct: Direct | None = None  # the RSGI adapter's shortcut for the common case
    direct_body: DirectBody | None = None  # … for a body route
    not_allowed: Response = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        allow = ", ".join(sorted(self.methods))
        object.__setattr__(
            self,
            "not_allowed",
            Response.text(405, "method not allowed\n").with_headers(("Allow", allow)),
        )


class App:
    """Hot routes + optional fallback ASGI app + startup/shutdown hooks.

    Build it once per worker (in the app factory), register routes, then hand it to
    ``RSGIAdapter`` or ``ASGIAdapter``. ``on_startup`` hooks run in order before the first
    request, ``on_shutdown`` hooks in reverse order after the last one (graceful stop), so a
    store opened at startup is flushed and closed at shutdown. The fallback app's own lifespan
    is not run: put its hooks here. ``drain`` says whether the worker drains before it stops
    (``web/drain.py``): the adapters then close each connection after its answer.
    """

    def __init__(
        self,
        *,
        fallback: ASGIApp | None = None,
        on_startup: Iterable[Hook] = (),
        on_shutdown: Iterable[Hook] = (),
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.routes: dict[str, Route] = {}
        self.prefix_routes: list[Route] = []  # longest prefix first
        self.fallback = fallback
        self.on_startup: list[Hook] = list(on_startup)
        self.on_shutdown: list[Hook] = list(on_shutdown)
        self.max_body = max_body
        self.handler_errors: Counter[str] = Counter()
        self.on_handler_error: Callable[[Route, Exception], None] | None = None
        self.drain = Drain()  # listens for SIGTERM only under granian (``web/server.py``)
        self.served = False
        """True in a granian worker (``web/server.py``): start-up work that pays off only
        under real traffic (a child process started ahead of it) checks this."""

    def route(
        self,
        path: str,
        handler: Handler,
        *,
        methods: Iterable[str] = ("GET",),
        on_error: Response = PIXEL_ON_ERROR,
        prefix: bool = False,
        read_body: bool = False,
        direct: Direct | None = None,
        direct_body: DirectBody | None = None,
    ) -> Route:
        """Register ``handler`` for ``path`` exactly, or for every path under it if ``prefix``.
        ``direct`` answers the common case of a GET or HEAD without a ``Request`` (at once,
        or after awaiting: a ``Pending``), and
        ``direct_body`` that of a ``read_body`` route from its body alone (under RSGI; the
        ASGI adapter always calls the handler)."""
        if direct_body is not None and not read_body:
            raise ValueError(f"direct_body needs read_body: {path}")
        if not path.startswith("/"):
            raise ValueError(f"route path must start with '/': {path!r}")
        allowed = {method.upper() for method in methods}
        if "GET" in allowed:
            allowed.add("HEAD")
        route = Route(
            path, handler, frozenset(allowed), on_error, prefix, read_body, direct, direct_body
        )
        if prefix:
            if any(r.path == path for r in self.prefix_routes):
                raise ValueError(f"duplicate prefix route: {path}")
            self.prefix_routes.append(route)
            self.prefix_routes.sort(key=lambda r: len(r.path), reverse=True)
        else:
            if path in self.routes:
                raise ValueError(f"duplicate route: {path}")
            self.routes[path] = route
        return route

    def match(self, path: str) -> Route | None:
        """The hot route for ``path``, or None (fallback app or 404)."""
        route = self.routes.get(path)
        if route is not None:
            return route
        for candidate in self.prefix_routes:
            if path.startswith(candidate.path):
                return candidate
        return None

    async def call(self, route: Route, request: Request) -> Response:
        """Run the route's handler; any exception becomes ``route.on_error`` (see module doc)."""
        try:
            response = await route.handler(request)
            if not isinstance(response, Response):
                raise TypeError(f"handler returned {type(response).__name__}, not Response")
            return response
        except Exception as exc:
            return self.failed(route, request.method, exc)

    def failed(self, route: Route, method: str, exc: Exception) -> Response:
        """A handler (or ``route.direct``) raised ``exc``: counted, logged, answered with
        ``route.on_error`` (see the module's doc)."""
        self.handler_errors[route.path] += 1
        if not isinstance(exc, StoreUnavailable):  # the store's guard logs an outage once
            log.exception("handler for %s %s raised; answering on_error", method, route.path)
        hook = self.on_handler_error
        if hook is not None:
            try:
                hook(route, exc)
            except Exception:
                log.exception("on_handler_error hook raised")
        return route.on_error

    async def startup(self) -> None:
        for hook in self.on_startup:
            await hook()

    async def shutdown(self) -> None:
        """Run every shutdown hook (reverse order) even if one fails; re-raise the first error."""
        first: BaseException | None = None
        for hook in reversed(self.on_shutdown):
            try:
                await hook()
            except Exception as exc:
                log.exception("shutdown hook %r failed", hook)
                first = first or exc
        if first is not None:
            raise first
