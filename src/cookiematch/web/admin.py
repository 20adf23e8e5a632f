"""What every role's admin API shares: the ``/admin/v1`` prefix and its bearer-token guard,
``application/problem+json`` errors (RFC 9457), JSON answers, request bodies read with a cap,
and ``GET /admin/v1/health``.

An ``AdminError`` raised by a handler becomes its problem; a ``StorageError`` a 503 that says
nothing was changed; anything else is logged and answered 500 without details. The roles'
endpoints are in ``web/exchange/admin.py``, ``web/buyer/admin.py`` and ``web/dmp/admin.py``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cookiematch.config import Secret
from cookiematch.errors import AdminError, BodyTooLarge, StorageError, StoreUnavailable
from cookiematch.protocol.json_errors import JSON_ERRORS, describe

__all__ = [
    "HEALTH_PATH",
    "HEALTH_ROUTE",
    "MAX_BODY_BYTES",
    "PREFIX",
    "bearer_authorized",
    "guarded_app",
    "json_response",
    "problem",
    "read_body",
    "read_json",
]

log = logging.getLogger("cookiematch.admin")

PREFIX = "/admin/v1"
HEALTH_PATH = f"{PREFIX}/health"
MAX_BODY_BYTES = 64 * 1024
PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    detail: str,
    *,
    errors: Sequence[dict[str, str]] = (),
    headers: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Response:
    """An ``application/problem+json`` response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = list(errors)
    return Response(msgspec.json.encode(body), status, headers, media_type=PROBLEM_JSON)


def json_response(
    data: object,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    *,
    encode: Callable[[object], bytes] = msgspec.json.encode,
) -> Response:
    """``data`` as an ``application/json`` answer."""
    return Response(encode(data), status, headers, media_type="application/json")


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with ``BodyTooLarge`` (413) once it is over ``limit`` bytes:
    at once from ``Content-Length``, else as soon as that much has arrived."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)
    return bytes(body)


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> object:
    """The request body as JSON: 413 over ``limit``, 400 if it is not JSON."""
    body = await read_body(request, limit)
    try:
        return msgspec.json.decode(body)
    except JSON_ERRORS as exc:
        raise AdminError(f"malformed JSON: {describe(exc)}") from None


async def _health(_: Request) -> Response:
    return json_response({"status": "ok"})


HEALTH_ROUTE = Route(HEALTH_PATH, _health, methods=["GET"])
"""``GET /admin/v1/health``: no token needed."""


def bearer_authorized(authorization: str, token: bytes) -> bool:
    """Does an ``Authorization`` header present ``Bearer <token>``? Never an empty token."""
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(presented.strip().encode(), token)


class _Guard:
    """Authenticates ``/admin/v1`` requests and turns any escaping exception into a 500."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        needs_auth = (path == PREFIX or path.startswith(PREFIX + "/")) and path != HEALTH_PATH
        authorization = Headers(scope=scope).get("authorization", "")
        if needs_auth and not bearer_authorized(authorization, self._token):
            detail = "a valid 'Authorization: Bearer <admin token>' header is required"
            response = problem(401, detail, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            log.debug("admin: client went away during %s %s", scope.get("method"), path)
        except Exception:
            log.exception("admin: unexpected error on %s %s", scope.get("method"), path)
            if not started:
                await problem(500, "internal error")(scope, receive, send)


async def _on_admin_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdminError)
    return problem(exc.status, exc.detail, errors=exc.errors, title=exc.title)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, exc.detail, headers=exc.headers)


async def _on_storage_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StoreUnavailable):  # the store's guard logs an outage once
        log.error("admin: store failed on %s %s: %s", request.method, request.url.path, exc)
    return problem(
        503, "the store is unavailable; nothing was changed", headers={"Retry-After": "5"}
    )


def guarded_app(routes: Sequence[BaseRoute], admin_token: Secret | str) -> Starlette:
    """A Starlette app serving ``routes`` behind the admin guard and problem+json errors.

    Every ``/admin/v1`` path but ``/admin/v1/health`` needs the bearer token; an empty token
    refuses them all. A path with a trailing slash it does not serve is a 404, never a
    redirect (which would name whatever host the request's ``Host`` header says). Other
    roles build their admin API with it.
    """
    token = admin_token.reveal() if isinstance(admin_token, Secret) else admin_token
    app = Starlette(
        routes=list(routes),
        middleware=[Middleware(_Guard, token=token)],
        exception_handlers={
            AdminError: _on_admin_error,
            HTTPException: _on_http_error,
            StorageError: _on_storage_error,
        },
    )
    # no redirect to the slash-less path: Starlette builds it from the Host header
    app.router.redirect_slashes = False
    return app
