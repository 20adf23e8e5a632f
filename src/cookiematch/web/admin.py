"""The exchange's admin API (``/admin/v1``): buyers and user lists, changed without a restart.

    GET                /admin/v1/health              no authentication
    GET                /admin/v1/buyers              {"buyers": [...]}
    GET|PUT|DELETE     /admin/v1/buyers/{nid}
    GET                /admin/v1/user_lists          {"user_lists": [...]}
    GET|PUT|DELETE     /admin/v1/user_lists/{id}
    POST               /admin/v1/user_lists/{id}/members   gids in bulk (user_list_members_route)

Every other ``/admin/v1`` request needs ``Authorization: Bearer <admin_token>``. Bodies are
the keys of a ``[[exchange.buyers]]`` / ``[[exchange.user_lists]]`` entry, validated by the
same code as the configuration file. Every error is ``application/problem+json`` (RFC 9457);
an unexpected exception is logged and answered 500 without details.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cookiematch.config import Secret, parse_buyer, parse_user_list
from cookiematch.errors import AdminError, NotFound, StorageError, ValidationFailed
from cookiematch.exchange import codec
from cookiematch.exchange.model import MAX_LIST_ID
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.exchange.user_list_bulk import UserListBulk, parse_members_request

__all__ = [
    "HEALTH_PATH",
    "MAX_BODY_BYTES",
    "PREFIX",
    "build_admin_app",
    "guarded_app",
    "problem",
    "user_list_members_route",
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


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``data`` as JSON; buyers and user lists in it as the store keeps them."""
    return Response(codec.encode(data), status, headers, media_type="application/json")


class _TooLarge(Exception):
    pass


async def _read_json(request: Request) -> object:
    """The request body as JSON; 413 past MAX_BODY_BYTES, 400 if it is not JSON."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _TooLarge
    try:
        return msgspec.json.decode(bytes(body))
    except msgspec.DecodeError as exc:
        raise AdminError(f"malformed JSON: {exc}") from None


def _parse_list_id(text: str) -> int | None:
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        return None
    value = int(text)
    return value if 0 < value <= MAX_LIST_ID else None


class _Endpoints:
    """The handlers, bound to one registry."""

    def __init__(self, registry: ExchangeRegistry) -> None:
        self.registry = registry

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def list_buyers(self, request: Request) -> Response:
        return _json({"buyers": self.registry.buyers()})

    async def buyer(self, request: Request) -> Response:
        nid: str = request.path_params["nid"]
        if request.method == "PUT":
            buyer = parse_buyer(await _read_json(request), nid=nid)
            created = self.registry.buyer(nid) is None
            await self.registry.put_buyer(buyer)
            log.info("admin: buyer %r %s", nid, "created" if created else "replaced")
            return _stored(buyer, created, f"{PREFIX}/buyers/{nid}")
        found = self.registry.buyer(nid)
        if found is None:
            raise NotFound(f"no buyer {nid!r}")
        if request.method == "DELETE":
            await self.registry.delete_buyer(nid)
            log.info("admin: buyer %r deleted", nid)
            return Response(status_code=204)
        return _json(found)

    async def list_user_lists(self, request: Request) -> Response:
        return _json({"user_lists": self.registry.user_lists()})

    async def user_list(self, request: Request) -> Response:
        text: str = request.path_params["list_id"]
        list_id = _parse_list_id(text)
        if request.method == "PUT":
            if list_id is None:
                message = f"must be a positive integer up to {MAX_LIST_ID}"
                raise ValidationFailed(
                    "invalid user list id", errors=[{"field": "id", "message": message}]
                )
            nids = {b.nid for b in self.registry.buyers()}
            user_list = parse_user_list(await _read_json(request), list_id=list_id, buyers=nids)
            created = self.registry.user_list(list_id) is None
            await self.registry.put_user_list(user_list)
            log.info("admin: user list %d %s", list_id, "created" if created else "replaced")
            return _stored(user_list, created, f"{PREFIX}/user_lists/{list_id}")
        found = None if list_id is None else self.registry.user_list(list_id)
        if list_id is None or found is None:
            raise NotFound(f"no user list {text!r}")
        if request.method == "DELETE":
            await self.registry.delete_user_list(list_id)
            log.info("admin: user list %d deleted", list_id)
            return Response(status_code=204)
        return _json(found)


def user_list_members_route(bulk: UserListBulk) -> Route:
    """``POST /admin/v1/user_lists/{id}/members``: add and remove browsers by gid, in bulk."""

    async def members(request: Request) -> Response:
        list_id = _parse_list_id(request.path_params["list_id"])
        if list_id is None:
            raise NotFound(f"no user list {request.path_params['list_id']!r}")
        outcome = await bulk.apply(list_id, parse_members_request(await _read_json(request)))
        return _json(outcome.to_dict())

    return Route(f"{PREFIX}/user_lists/{{list_id}}/members", members, methods=["POST"])


def _stored(data: object, created: bool, location: str) -> Response:
    return _json(data, 201, {"Location": location}) if created else _json(data)


class _Guard:
    """Authenticates ``/admin/v1`` requests and turns any escaping exception into a 500."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def _authorized(self, scope: Scope) -> bool:
        scheme, _, presented = Headers(scope=scope).get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self._token:
            return False
        return hmac.compare_digest(presented.strip().encode(), self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        needs_auth = (path == PREFIX or path.startswith(PREFIX + "/")) and path != HEALTH_PATH
        if needs_auth and not self._authorized(scope):
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


async def _on_too_large(request: Request, exc: Exception) -> Response:
    return problem(413, f"the request body is over {MAX_BODY_BYTES} bytes")


async def _on_storage_error(request: Request, exc: Exception) -> Response:
    log.error("admin: store failed on %s %s: %s", request.method, request.url.path, exc)
    return problem(
        503, "the store is unavailable; nothing was changed", headers={"Retry-After": "5"}
    )


def build_admin_app(
    registry: ExchangeRegistry,
    admin_token: Secret | str,
    *,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The admin ASGI application over ``registry``. An empty token refuses every request.

    ``extra_routes`` are served by the same application (e.g. ``/metrics``); they need the
    token only if they are under ``/admin/v1``.
    """
    token = admin_token.reveal() if isinstance(admin_token, Secret) else admin_token
    endpoints = _Endpoints(registry)
    routes: list[BaseRoute] = [
        Route(HEALTH_PATH, endpoints.health, methods=["GET"]),
        Route(f"{PREFIX}/buyers", endpoints.list_buyers, methods=["GET"]),
        Route(f"{PREFIX}/buyers/{{nid}}", endpoints.buyer, methods=["GET", "PUT", "DELETE"]),
        Route(f"{PREFIX}/user_lists", endpoints.list_user_lists, methods=["GET"]),
        Route(
            f"{PREFIX}/user_lists/{{list_id}}",
            endpoints.user_list,
            methods=["GET", "PUT", "DELETE"],
        ),
        *extra_routes,
    ]
    return guarded_app(routes, token)


def guarded_app(routes: Sequence[BaseRoute], admin_token: Secret | str) -> Starlette:
    """A Starlette app serving ``routes`` behind the admin guard and problem+json errors.

    Every ``/admin/v1`` path but ``/admin/v1/health`` needs the bearer token; an empty token
    refuses them all. Other roles build their admin API with it.
    """
    token = admin_token.reveal() if isinstance(admin_token, Secret) else admin_token
    return Starlette(
        routes=list(routes),
        middleware=[Middleware(_Guard, token=token)],
        exception_handlers={
            AdminError: _on_admin_error,
            HTTPException: _on_http_error,
            _TooLarge: _on_too_large,
            StorageError: _on_storage_error,
        },
    )
