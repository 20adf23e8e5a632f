"""The exchange's admin API (``/admin/v1``): buyers and user lists, changed without a restart.

    GET                /admin/v1/health              no authentication
    GET                /admin/v1/buyers              {"buyers": [...]}
    GET|PUT|DELETE     /admin/v1/buyers/{nid}
    GET|PUT            /admin/v1/buyers/{nid}/redirect_url     scope redirect_url
    GET                /admin/v1/user_lists          {"user_lists": [...]}     scope user_lists
    GET|PUT|DELETE     /admin/v1/user_lists/{id}                               scope user_lists
    POST               /admin/v1/user_lists/{id}/members   gids in bulk        scope user_lists
    GET                /admin/v1/user_lists/{id}/stats     members, changes    scope user_lists
    GET                /admin/v1/stats, /admin/v1/buyers/{nid}/stats   the buyer monitoring
    POST|GET|DELETE    /admin/v1/buyers/{nid}/credentials[/{id}]  (web/exchange/credentials.py)

Every other ``/admin/v1`` request needs ``Authorization: Bearer <admin_token>``, or a buyer's
API credential for the routes of its scopes (above), on its own buyer and lists only: a list
of another buyer, or a body naming another buyer, is 403. Bodies are
the keys of a ``[[exchange.buyers]]`` / ``[[exchange.user_lists]]`` entry, validated by the
same code as the configuration file; answers carry them as the store keeps them
(``exchange/codec.py``), but a buyer's ``optout_webhook_secret`` is never shown: answers carry
``MASK`` in its place, and a ``PUT`` that sends ``MASK`` back keeps the secret stored. Errors
are ``application/problem+json`` (``web/admin.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cookiematch.config import Secret, parse_buyer, parse_user_list
from cookiematch.errors import Conflict, NotFound, ValidationFailed
from cookiematch.exchange import codec
from cookiematch.exchange.list_changes import WINDOW_DAYS, ListChanges
from cookiematch.exchange.model import MAX_LIST_ID, Buyer, UserList
from cookiematch.exchange.monitoring import BuyerMonitor
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.exchange.table_sizes import TableSizeLog
from cookiematch.exchange.user_list_bulk import UserListBulk, parse_members_request
from cookiematch.secret import MASK
from cookiematch.web.admin import (
    HEALTH_ROUTE,
    PREFIX,
    Authenticate,
    ScopedRoute,
    guarded_app,
    json_response,
    principal_of,
    read_json,
    require_party,
)

__all__ = [
    "build_admin_app",
    "stats_routes",
    "user_list_members_route",
    "user_list_stats_route",
]

USER_LISTS_SCOPE = "user_lists"
REDIRECT_URL_SCOPE = "redirect_url"

log = logging.getLogger("cookiematch.admin")


SECRET_KEY = "optout_webhook_secret"


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``data`` as JSON; buyers and user lists in it as the store keeps them, secrets masked."""
    return json_response(data, status, headers, encode=codec.encode_masked)


def _keep_secret(body: object, current: Buyer | None) -> object:
    """The body of a buyer ``PUT`` with a masked secret replaced by the one stored (a body
    read from a ``GET`` can be sent back as it is)."""
    if not isinstance(body, dict) or body.get(SECRET_KEY) != MASK:
        return body
    kept = current.optout_webhook_secret if current is not None else None
    return {**body, SECRET_KEY: kept.reveal() if kept is not None else MASK}


def _parse_list_id(text: str) -> int | None:
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        return None
    value = int(text)
    return value if 0 < value <= MAX_LIST_ID else None


class _Endpoints:
    """The handlers, bound to one registry."""

    def __init__(self, registry: ExchangeRegistry) -> None:
        self.registry = registry

    async def list_buyers(self, request: Request) -> Response:
        return _json({"buyers": self.registry.buyers()})

    async def buyer(self, request: Request) -> Response:
        nid: str = request.path_params["nid"]
        if request.method == "PUT":
            current = self.registry.buyer(nid)
            buyer = self._valid(
                parse_buyer(_keep_secret(await read_json(request), current), nid=nid)
            )
            created = current is None
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

    def _valid(self, buyer: Buyer) -> Buyer:
        """``buyer`` if the lists it requires exist and are its own; else ValidationFailed."""
        problems = buyer.list_problems(self._owner_of)
        if problems:
            errors = [{"field": key, "message": message} for key, message in problems]
            raise ValidationFailed("invalid buyer", errors=errors)
        return buyer

    def _owner_of(self, list_id: int) -> str | None:
        found = self.registry.user_list(list_id)
        return None if found is None else found.owner

    async def redirect_url(self, request: Request) -> Response:
        """A buyer's redirect URL alone: what its ``redirect_url`` credential may change."""
        nid: str = request.path_params["nid"]
        require_party(request, nid, f"the credential may not act for buyer {nid!r}")
        current = self.registry.buyer(nid)
        if current is None:
            raise NotFound(f"no buyer {nid!r}")
        if request.method == "PUT":
            body = await read_json(request)
            if not isinstance(body, dict) or set(body) != {"redirect_url"}:
                message = 'expected {"redirect_url": "<url>"}'
                raise ValidationFailed(message, errors=[{"field": "", "message": message}])
            record = msgspec.json.decode(codec.encode(current))
            current = parse_buyer({**record, **body}, nid=nid)
            await self.registry.put_buyer(current)
            log.info("admin: buyer %r redirect URL replaced", nid)
        return _json({"nid": nid, "redirect_url": current.redirect_url})

    async def list_user_lists(self, request: Request) -> Response:
        party = principal_of(request).party
        found = [u for u in self.registry.user_lists() if party in (None, u.owner)]
        return _json({"user_lists": found})

    async def user_list(self, request: Request) -> Response:
        text: str = request.path_params["list_id"]
        list_id = _parse_list_id(text)
        party = principal_of(request).party
        found = None if list_id is None else self.registry.user_list(list_id)
        if found is not None:
            require_party(request, found.owner, f"user list {list_id} belongs to another buyer")
        if request.method == "PUT":
            if list_id is None:
                message = f"must be a positive integer up to {MAX_LIST_ID}"
                raise ValidationFailed(
                    "invalid user list id", errors=[{"field": "id", "message": message}]
                )
            body = await read_json(request)
            if party is not None and isinstance(body, dict):
                body = {"owner": party, **body}
            nids = {b.nid for b in self.registry.buyers()}
            user_list = parse_user_list(body, list_id=list_id, buyers=nids)
            require_party(request, user_list.owner, "a buyer's credential creates its own lists")
            if found is not None and found.owner != user_list.owner:
                self._not_required(found, "its owner cannot change")
            await self.registry.put_user_list(user_list)
            created = found is None
            log.info("admin: user list %d %s", list_id, "created" if created else "replaced")
            return _stored(user_list, created, f"{PREFIX}/user_lists/{list_id}")
        if list_id is None or found is None:
            raise NotFound(f"no user list {text!r}")
        if request.method == "DELETE":
            self._not_required(found, "it cannot be deleted")
            await self.registry.delete_user_list(list_id)
            log.info("admin: user list %d deleted", list_id)
            return Response(status_code=204)
        return _json(found)

    def _not_required(self, user_list: UserList, refusal: str) -> None:
        """Conflict if a buyer's ``require_user_lists`` names the list."""
        for buyer in self.registry.buyers():
            if user_list.id in buyer.require_user_lists:
                detail = f"buyer {buyer.nid!r} requires user list {user_list.id}: {refusal}"
                raise Conflict(detail)


def user_list_members_route(bulk: UserListBulk) -> Route:
    """``POST /admin/v1/user_lists/{id}/members``: add and remove browsers by gid, in bulk."""

    async def members(request: Request) -> Response:
        list_id = _parse_list_id(request.path_params["list_id"])
        if list_id is None:
            raise NotFound(f"no user list {request.path_params['list_id']!r}")
        body = parse_members_request(await read_json(request))
        require_party(request, body.nid, f"the credential may not act for buyer {body.nid!r}")
        outcome = await bulk.apply(list_id, body)
        return _json(outcome.to_dict())

    path = f"{PREFIX}/user_lists/{{list_id}}/members"
    return ScopedRoute(path, members, methods=["POST"], scope=USER_LISTS_SCOPE)


def user_list_stats_route(
    registry: ExchangeRegistry, sizes: TableSizeLog, changes: ListChanges
) -> Route:
    """``GET /admin/v1/user_lists/{id}/stats``: the list's members as last counted
    (``members``, ``measured_at``; null before a count) and its changes over the last
    ``WINDOW_DAYS`` days (``added``, ``removed``, ``expired``)."""

    async def stats(request: Request) -> Response:
        text: str = request.path_params["list_id"]
        list_id = _parse_list_id(text)
        found = None if list_id is None else registry.user_list(list_id)
        if list_id is None or found is None:
            raise NotFound(f"no user list {text!r}")
        require_party(request, found.owner, f"user list {list_id} belongs to another buyer")
        measured = await sizes.latest()
        members = measured.user_lists.get(str(list_id), 0) if measured else None
        return _json(
            {
                "id": list_id,
                "owner": found.owner,
                "members": members,
                "measured_at": measured.measured_at if measured else None,
                "window_days": WINDOW_DAYS,
                **await changes.totals(list_id),
            }
        )

    path = f"{PREFIX}/user_lists/{{list_id}}/stats"
    return ScopedRoute(path, stats, methods=["GET"], scope=USER_LISTS_SCOPE)


def _stored(data: object, created: bool, location: str) -> Response:
    return _json(data, 201, {"Location": location}) if created else _json(data)


def build_admin_app(
    registry: ExchangeRegistry,
    admin_token: Secret | str,
    *,
    extra_routes: Sequence[BaseRoute] = (),
    authenticate: Authenticate | None = None,
) -> Starlette:
    """The admin ASGI application over ``registry``. An empty token refuses every request.

    ``extra_routes`` are served by the same application (e.g. ``/metrics``); they need the
    token only if they are under ``/admin/v1``. ``authenticate`` recognises buyers' API
    credentials (``web/exchange/credentials.py``); without it only the admin token works.
    """
    token = admin_token.reveal() if isinstance(admin_token, Secret) else admin_token
    endpoints = _Endpoints(registry)
    routes: list[BaseRoute] = [
        HEALTH_ROUTE,
        Route(f"{PREFIX}/buyers", endpoints.list_buyers, methods=["GET"]),
        Route(f"{PREFIX}/buyers/{{nid}}", endpoints.buyer, methods=["GET", "PUT", "DELETE"]),
        ScopedRoute(
            f"{PREFIX}/buyers/{{nid}}/redirect_url",
            endpoints.redirect_url,
            methods=["GET", "PUT"],
            scope=REDIRECT_URL_SCOPE,
        ),
        ScopedRoute(
            f"{PREFIX}/user_lists",
            endpoints.list_user_lists,
            methods=["GET"],
            scope=USER_LISTS_SCOPE,
        ),
        ScopedRoute(
            f"{PREFIX}/user_lists/{{list_id}}",
            endpoints.user_list,
            methods=["GET", "PUT", "DELETE"],
            scope=USER_LISTS_SCOPE,
        ),
        *extra_routes,
    ]
    return guarded_app(routes, token, authenticate=authenticate)


def stats_routes(
    registry: ExchangeRegistry, monitor: BuyerMonitor, prefix: str = "/admin/v1"
) -> list[BaseRoute]:
    """``GET {prefix}/buyers/{nid}/stats`` and ``GET {prefix}/stats`` (every buyer)."""

    async def one(request: Request) -> Response:
        nid: str = request.path_params["nid"]
        buyer = registry.buyer(nid)
        if buyer is None:
            raise NotFound(f"no buyer {nid!r}")
        stats = await monitor.stats(nid, buyer.max_qps)
        return _json(stats.to_dict())

    async def every(request: Request) -> Response:
        found = [(await monitor.stats(b.nid, b.max_qps)).to_dict() for b in registry.buyers()]
        return _json({"buyers": found})

    return [
        Route(f"{prefix}/buyers/{{nid}}/stats", one, methods=["GET"]),
        Route(f"{prefix}/stats", every, methods=["GET"]),
    ]
