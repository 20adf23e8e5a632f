"""What every role's admin API shares: the ``/admin/v1`` prefix and its bearer-token guard,
``application/problem+json`` errors (RFC 9457), JSON answers, request bodies read with a cap,
and ``GET /admin/v1/health``; ``GET /admin/v1/openapi.json`` (``web/openapi.py``) needs no
token either.

Besides the role's admin token (every route), a role may accept scoped credentials: the
guard asks ``authenticate`` for the ``Principal`` of any other bearer token (unknown: 401),
and lets a party's principal reach only the ``ScopedRoute``s whose scope it holds (anything
else: 403). Handlers read who is acting with ``principal_of`` and ``require_party`` to check
what the request touches belongs to that party.

An ``AdminError`` raised by a handler becomes its problem; a ``StorageError`` a 503 that says
nothing was changed; anything else is logged and answered 500 without details. The roles'
endpoints are in ``web/exchange/admin.py``, ``web/buyer/admin.py`` and ``web/dmp/admin.py``.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
from cookiematch.errors import (
    AdminError,
    BodyTooLarge,
    Forbidden,
    StorageError,
    StoreUnavailable,
)
from cookiematch.protocol.json_errors import JSON_ERRORS, describe

__all__ = [
    "HEALTH_PATH",
    "HEALTH_ROUTE",
    "MAX_BODY_BYTES",
    "OPENAPI_PATH",
    "OPERATOR",
    "PREFIX",
    "PROBLEM_JSON",
    "Authenticate",
    "FieldError",
    "Health",
    "Principal",
    "Problem",
    "ScopedRoute",
    "bearer_authorized",
    "guarded_app",
    "json_response",
    "principal_of",
    "problem",
    "read_body",
    "read_json",
    "require_party",
]

log = logging.getLogger("cookiematch.admin")

PREFIX = "/admin/v1"
HEALTH_PATH = f"{PREFIX}/health"
OPENAPI_PATH = f"{PREFIX}/openapi.json"  # web/openapi.py; no token needed either
PUBLIC_PATHS = frozenset((HEALTH_PATH, OPENAPI_PATH))
MAX_BODY_BYTES = 64 * 1024
PROBLEM_JSON = "application/problem+json"


class FieldError(msgspec.Struct, frozen=True):
    """One invalid key of a request: its dotted path ("" for the whole body) and why."""

    field: str
    message: str


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """An RFC 9457 problem: the body of every admin API error."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] = []


def problem(
    status: int,
    detail: str,
    *,
    errors: Sequence[dict[str, str]] = (),
    headers: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Response:
    """An ``application/problem+json`` response."""
    body = Problem(
        type="about:blank",
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        errors=[FieldError(e["field"], e["message"]) for e in errors],
    )
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


class Health(msgspec.Struct, frozen=True):
    """The answer of ``GET /admin/v1/health``."""

    status: str


async def _health(_: Request) -> Response:
    return json_response(Health("ok"))


HEALTH_ROUTE = Route(HEALTH_PATH, _health, methods=["GET"])
"""``GET /admin/v1/health``: no token needed."""


def bearer_authorized(authorization: str, token: bytes) -> bool:
    """Does an ``Authorization`` header present ``Bearer <token>``? Never an empty token."""
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(presented.strip().encode(), token)


def _bearer(authorization: str) -> str | None:
    scheme, _, presented = authorization.partition(" ")
    return presented.strip() if scheme.lower() == "bearer" and presented.strip() else None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an authenticated admin request acts for: the operator (``party`` None, the admin
    token: every route) or one party (a buyer) limited to the routes of its ``scopes``."""

    party: str | None = None
    scopes: frozenset[str] = frozenset()
    credential: str | None = None  # the credential's id: its changes are logged with it


OPERATOR = Principal()
_PRINCIPAL = "principal"  # its key in the request's ``scope["state"]``

Authenticate = Callable[[str], Principal | None]
"""A bearer token that is not the admin token -> its party's principal, or None (401)."""


class ScopedRoute(Route):
    """A route a party's credential may call when it holds ``scope`` (the operator always)."""

    def __init__(
        self, path: str, endpoint: Callable[..., Any], *, methods: Sequence[str], scope: str
    ) -> None:
        super().__init__(path, endpoint, methods=list(methods))
        self.scope = scope


def principal_of(request: Request) -> Principal:
    """Who the guard authenticated for this request (Forbidden if it did not)."""
    found = request.scope.get("state", {}).get(_PRINCIPAL)
    if not isinstance(found, Principal):
        raise Forbidden("no authenticated principal")
    return found


def require_party(request: Request, party: str, what: str) -> None:
    """Forbidden unless the operator, or ``party`` itself, is acting; ``what`` names the
    thing in the refusal (e.g. "user list 7 belongs to another buyer")."""
    principal = principal_of(request)
    if principal.party is not None and principal.party != party:
        raise Forbidden(what)


_Scopes = list[tuple[re.Pattern[str], frozenset[str], str]]


class _Guard:
    """Authenticates ``/admin/v1`` requests and turns any escaping exception into a 500."""

    def __init__(
        self, app: ASGIApp, token: str, authenticate: Authenticate | None, scopes: _Scopes
    ) -> None:
        self.app = app
        self._token = token.encode()
        self._authenticate = authenticate
        self._scopes = scopes

    def _principal(self, authorization: str) -> Principal | None:
        if bearer_authorized(authorization, self._token):
            return OPERATOR
        presented = _bearer(authorization)
        if presented is None or self._authenticate is None:
            return None
        return self._authenticate(presented)

    def _permits(self, principal: Principal, method: str, path: str) -> bool:
        if principal.party is None:
            return True
        return any(
            scope in principal.scopes and method in methods and pattern.match(path)
            for pattern, methods, scope in self._scopes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        needs_auth = (path == PREFIX or path.startswith(PREFIX + "/")) and (
            path not in PUBLIC_PATHS
        )
        if needs_auth:
            principal = self._principal(Headers(scope=scope).get("authorization", ""))
            if principal is None:
                token = "admin token" if self._authenticate is None else "token or API credential"
                detail = f"a valid 'Authorization: Bearer <{token}>' header is required"
                response = problem(401, detail, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
            if not self._permits(principal, scope["method"], path):
                detail = f"the credential of {principal.party!r} does not allow this request"
                await problem(403, detail)(scope, receive, send)
                return
            scope.setdefault("state", {})[_PRINCIPAL] = principal
            if principal.party is not None and scope["method"] not in ("GET", "HEAD"):
                log.info(
                    "admin: %s %s with credential %s of %r",
                    scope["method"], path, principal.credential, principal.party,
                )  # fmt: skip
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
    return problem(
        exc.status, exc.detail, errors=exc.errors, title=exc.title, headers=exc.headers or None
    )


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, exc.detail, headers=exc.headers)


async def _on_storage_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StoreUnavailable):  # the store's guard logs an outage once
        log.error("admin: store failed on %s %s: %s", request.method, request.url.path, exc)
    return problem(
        503, "the store is unavailable; nothing was changed", headers={"Retry-After": "5"}
    )


def guarded_app(
    routes: Sequence[BaseRoute],
    admin_token: Secret | str,
    *,
    authenticate: Authenticate | None = None,
) -> Starlette:
    """A Starlette app serving ``routes`` behind the admin guard and problem+json errors.

    Every ``/admin/v1`` path but ``/admin/v1/health`` needs the bearer token (an empty token
    matches nothing), or a token ``authenticate`` knows: its party may call the
    ``ScopedRoute``s of its scopes, nothing else. A path with a trailing slash it does not
    serve is a 404, never a redirect (which would name whatever host the request's ``Host``
    header says). Other roles build their admin API with it.
    """
    token = admin_token.reveal() if isinstance(admin_token, Secret) else admin_token
    scopes: _Scopes = [
        (route.path_regex, frozenset(route.methods or ()), route.scope)
        for route in routes
        if isinstance(route, ScopedRoute)
    ]
    guard = Middleware(_Guard, token=token, authenticate=authenticate, scopes=scopes)
    app = Starlette(
        routes=list(routes),
        middleware=[guard],
        exception_handlers={
            AdminError: _on_admin_error,
            HTTPException: _on_http_error,
            StorageError: _on_storage_error,
        },
    )
    # no redirect to the slash-less path: Starlette builds it from the Host header
    app.router.redirect_slashes = False
    return app
