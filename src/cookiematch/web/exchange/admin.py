"""The exchange's admin API (``/admin/v1``): buyers and user lists, changed without a restart.

    GET                /admin/v1/health              no authentication
    GET                /admin/v1/openapi.json        no authentication: this API's contract
    GET                /admin/v1/buyers              {"buyers": [...]}
    GET|PUT|DELETE     /admin/v1/buyers/{nid}
    GET|PUT            /admin/v1/buyers/{nid}/redirect_url     scope redirect_url
    GET                /admin/v1/user_lists          {"user_lists": [...]}     scope user_lists
    GET|PUT|DELETE     /admin/v1/user_lists/{id}                               scope user_lists
    POST               /admin/v1/user_lists/{id}/members   gids in bulk        scope user_lists
    GET                /admin/v1/user_lists/{id}/stats     members, changes    scope user_lists
    GET                /admin/v1/stats, /admin/v1/buyers/{nid}/stats   the buyer monitoring
    POST|GET|DELETE    /admin/v1/buyers/{nid}/credentials[/{id}]  (web/exchange/credentials.py)
    GET|PUT|DELETE     /admin/v1/buyers/{nid}/enforcement   its actions; PUT overrides them,
                                                            DELETE returns to the rules

Every other ``/admin/v1`` request needs ``Authorization: Bearer <admin_token>``, or a buyer's
API credential for the routes of its scopes (above), on its own buyer and lists only: a body
naming another buyer is 403, another buyer's list 404 (as a list that does not exist). A user
list ID stays its owner's, after the list is deleted too: a ``PUT`` that would give it to
another buyer is 409, as is a new list over ``max_user_lists_per_buyer``. Bodies are
the keys of a ``[[exchange.buyers]]`` / ``[[exchange.user_lists]]`` entry, validated by the
same code as the configuration file; answers carry them as the store keeps them
(``exchange/codec.py``), but a buyer's ``optout_webhook_secret`` is never shown: answers carry
``MASK`` in its place, and a ``PUT`` that sends ``MASK`` back keeps the secret stored. Errors
are ``application/problem+json`` (``web/admin.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cookiematch.config import Secret, parse_buyer, parse_user_list
from cookiematch.config.convert import convert_collecting
from cookiematch.errors import Conflict, NotFound, ValidationFailed
from cookiematch.exchange import codec
from cookiematch.exchange.enforcement import EnforcementOverride, Enforcer
from cookiematch.exchange.list_changes import WINDOW_DAYS, ListChanges
from cookiematch.exchange.model import MAX_LIST_ID, MAX_USER_LISTS_PER_BUYER, Buyer, UserList
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
from cookiematch.web.exchange.api_spec import (
    CREDENTIAL,
    OPERATIONS,
    REDIRECT_URL_SCOPE,
    USER_LISTS_SCOPE,
    BulkAnswer,
    Buyers,
    BuyersStats,
    BuyerStatsAnswer,
    EnforcementAnswer,
    RedirectURL,
    UserLists,
    UserListStats,
)
from cookiematch.web.openapi import Operation, with_openapi

__all__ = [
    "build_admin_app",
    "put_buyer",
    "stats_routes",
    "user_list_members_route",
    "user_list_stats_route",
]

log = logging.getLogger("cookiematch.admin")


SECRET_KEY = "optout_webhook_secret"
DESCRIPTION = (
    "Buyers, user lists and their members, buyer monitoring and enforcement, buyers' API "
    "credentials, and the access and erasure of a browser's data, changed without a restart."
)


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


def _visible_list(registry: ExchangeRegistry, request: Request) -> UserList:
    """The user list the request's path names, if it exists and the acting party owns it (or
    the operator acts); else NotFound, so that a buyer does not learn the IDs others hold."""
    text: str = request.path_params["list_id"]
    list_id = _parse_list_id(text)
    found = None if list_id is None else registry.user_list(list_id)
    if found is None or principal_of(request).party not in (None, found.owner):
        raise NotFound(f"no user list {text!r}")
    return found


async def put_buyer(registry: ExchangeRegistry, nid: str, body: object) -> tuple[Buyer, bool]:
    """Create or replace buyer ``nid`` from the keys of a ``[[exchange.buyers]]`` entry (a
    masked secret keeps the stored one; the lists it requires must exist and be its own):
    the buyer stored and whether it is new; ValidationFailed, nothing stored, otherwise.
    The admin API's ``PUT`` and the console's form."""

    def owner_of(list_id: int) -> str | None:
        found = registry.user_list(list_id)
        return None if found is None else found.owner

    current = registry.buyer(nid)
    buyer = parse_buyer(_keep_secret(body, current), nid=nid)
    problems = buyer.list_problems(owner_of)
    if problems:
        errors = [{"field": key, "message": message} for key, message in problems]
        raise ValidationFailed("invalid buyer", errors=errors)
    await registry.put_buyer(buyer)
    log.info("admin: buyer %r %s", nid, "created" if current is None else "replaced")
    return buyer, current is None


class _Endpoints:
    """The handlers, bound to one registry."""

    def __init__(self, registry: ExchangeRegistry, max_lists_per_buyer: int) -> None:
        self.registry = registry
        self.max_lists_per_buyer = max_lists_per_buyer

    async def list_buyers(self, request: Request) -> Response:
        return _json(Buyers(list(self.registry.buyers())))

    async def buyer(self, request: Request) -> Response:
        nid: str = request.path_params["nid"]
        if request.method == "PUT":
            buyer, created = await put_buyer(self.registry, nid, await read_json(request))
            return _stored(buyer, created, f"{PREFIX}/buyers/{nid}")
        found = self.registry.buyer(nid)
        if found is None:
            raise NotFound(f"no buyer {nid!r}")
        if request.method == "DELETE":
            await self.registry.delete_buyer(nid)
            log.info("admin: buyer %r deleted, its credentials revoked", nid)
            return Response(status_code=204)
        return _json(found)

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
            # the rest of the record as stored now: another worker's recent change is kept
            current = await self.registry.stored_buyer(nid)
            if current is None:
                raise NotFound(f"no buyer {nid!r}")
            record = msgspec.json.decode(codec.encode(current))
            current = parse_buyer({**record, **body}, nid=nid)
            await self.registry.put_buyer(current)
            log.info("admin: buyer %r redirect URL replaced", nid)
        return _json(RedirectURL(nid, current.redirect_url.url))

    async def list_user_lists(self, request: Request) -> Response:
        party = principal_of(request).party
        found = [u for u in self.registry.user_lists() if party in (None, u.owner)]
        return _json(UserLists(found))

    async def user_list(self, request: Request) -> Response:
        if request.method == "PUT":
            return await self._put_user_list(request)
        found = _visible_list(self.registry, request)
        if request.method == "DELETE":
            self._not_required(found, "it cannot be deleted")
            await self.registry.delete_user_list(found.id)
            log.info("admin: user list %d deleted", found.id)
            return Response(status_code=204)
        return _json(found)

    async def _put_user_list(self, request: Request) -> Response:
        """Create or replace a list: an ID held by another buyer (its list, or its deleted
        list) is a Conflict, as is a new ID over the owner's ``max_lists_per_buyer``."""
        list_id = _parse_list_id(request.path_params["list_id"])
        if list_id is None:
            message = f"must be a positive integer up to {MAX_LIST_ID}"
            raise ValidationFailed(
                "invalid user list id", errors=[{"field": "id", "message": message}]
            )
        party = principal_of(request).party
        body = await read_json(request)
        if party is not None and isinstance(body, dict):
            body = {"owner": party, **body}
        nids = {b.nid for b in self.registry.buyers()}
        user_list = parse_user_list(body, list_id=list_id, buyers=nids)
        owner = user_list.owner
        require_party(request, owner, "a buyer's credential creates its own lists")
        holder = await self.registry.list_holder(list_id)
        if holder is not None and holder != owner:
            held = "another buyer" if party is not None else f"buyer {holder!r}"
            raise Conflict(f"user list ID {list_id} is held by {held}: an ID never changes owner")
        if holder is None and self.registry.held_lists(owner) >= self.max_lists_per_buyer:
            raise Conflict(
                f"buyer {owner!r} holds {self.max_lists_per_buyer} user list IDs, the most "
                "allowed (max_user_lists_per_buyer; the IDs of its deleted lists count, and "
                "it may use them again)"
            )
        created = self.registry.user_list(list_id) is None
        await self.registry.put_user_list(user_list)
        log.info("admin: user list %d %s", list_id, "created" if created else "replaced")
        return _stored(user_list, created, f"{PREFIX}/user_lists/{list_id}")

    def _not_required(self, user_list: UserList, refusal: str) -> None:
        """Conflict if a buyer's ``require_user_lists`` names the list."""
        for buyer in self.registry.buyers():
            if user_list.id in buyer.require_user_lists:
                detail = f"buyer {buyer.nid!r} requires user list {user_list.id}: {refusal}"
                raise Conflict(detail)


def user_list_members_route(registry: ExchangeRegistry, bulk: UserListBulk) -> Route:
    """``POST /admin/v1/user_lists/{id}/members``: add and remove browsers by gid, in bulk."""

    async def members(request: Request) -> Response:
        text: str = request.path_params["list_id"]
        list_id = _parse_list_id(text)
        if list_id is None:
            raise NotFound(f"no user list {text!r}")
        body = parse_members_request(await read_json(request))
        require_party(request, body.nid, f"the credential may not act for buyer {body.nid!r}")
        if principal_of(request).party is not None:
            _visible_list(registry, request)
        outcome = await bulk.apply(list_id, body)
        return _json(msgspec.convert(outcome.to_dict(), BulkAnswer))

    path = f"{PREFIX}/user_lists/{{list_id}}/members"
    return ScopedRoute(path, members, methods=["POST"], scope=USER_LISTS_SCOPE)


def user_list_stats_route(
    registry: ExchangeRegistry, sizes: TableSizeLog, changes: ListChanges
) -> Route:
    """``GET /admin/v1/user_lists/{id}/stats``: the list's members as last counted
    (``members``, ``measured_at``; null before a count) and its changes over the last
    ``WINDOW_DAYS`` days (``added``, ``removed``, ``expired``)."""

    async def stats(request: Request) -> Response:
        found = _visible_list(registry, request)
        measured = await sizes.latest()
        members = measured.user_lists.get(str(found.id), 0) if measured else None
        return _json(
            UserListStats(
                id=found.id,
                owner=found.owner,
                members=members,
                measured_at=measured.measured_at if measured else None,
                window_days=WINDOW_DAYS,
                **await changes.totals(found.id),
            )
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
    extra_operations: Sequence[Operation] = (),
    authenticate: Authenticate | None = None,
    max_user_lists_per_buyer: int = MAX_USER_LISTS_PER_BUYER,
) -> Starlette:
    """The admin ASGI application over ``registry``. An empty token refuses every
    ``/admin/v1`` request, buyers' credentials too (no operator, no admin API).

    ``extra_routes`` are served by the same application (e.g. ``/metrics``); they need the
    token only if they are under ``/admin/v1``, and then an operation of the OpenAPI document:
    in ``OPERATIONS`` (``web/exchange/api_spec.py``) or ``extra_operations``.
    ``authenticate`` recognises buyers' API credentials (``web/exchange/credentials.py``);
    without it only the admin token works.
    """
    token = admin_token.reveal() if isinstance(admin_token, Secret) else admin_token
    endpoints = _Endpoints(registry, max_user_lists_per_buyer)
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
    described = with_openapi(
        "cookiematch exchange admin API",
        DESCRIPTION,
        routes,
        [*OPERATIONS, *extra_operations],
        credential=CREDENTIAL,
    )
    return guarded_app(described, token, authenticate=authenticate if token else None)


def stats_routes(
    registry: ExchangeRegistry,
    monitor: BuyerMonitor,
    enforcer: Enforcer,
    prefix: str = "/admin/v1",
) -> list[BaseRoute]:
    """``GET {prefix}/buyers/{nid}/stats``, ``GET {prefix}/stats`` (every buyer) and
    ``GET|PUT|DELETE {prefix}/buyers/{nid}/enforcement``."""

    def known(request: Request) -> Buyer:
        nid: str = request.path_params["nid"]
        buyer = registry.buyer(nid)
        if buyer is None:
            raise NotFound(f"no buyer {nid!r}")
        return buyer

    async def stats_of(buyer: Buyer) -> Any:
        stats = await monitor.stats(buyer.nid, buyer.max_qps)
        found = {**stats.to_dict(), "enforcement": enforcer.describe(buyer)}
        return msgspec.convert(found, BuyerStatsAnswer)

    async def one(request: Request) -> Response:
        return _json(await stats_of(known(request)))

    async def every(request: Request) -> Response:
        return _json(BuyersStats([await stats_of(b) for b in registry.buyers()]))

    async def enforcement(request: Request) -> Response:
        buyer = known(request)
        if request.method == "PUT":
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValidationFailed(
                    "invalid enforcement", errors=[{"field": "", "message": "expected an object"}]
                )
            order, errors = convert_collecting(body, EnforcementOverride)
            if order is None:
                raise ValidationFailed("invalid enforcement", errors=errors)
            await enforcer.override(buyer, order)
            log.info("admin: enforcement of %r set to %s", buyer.nid, list(order.actions))
        elif request.method == "DELETE":
            await enforcer.resume(buyer.nid)
            log.info("admin: enforcement of %r returned to the rules", buyer.nid)
        return _json(msgspec.convert(enforcer.describe(buyer), EnforcementAnswer))

    return [
        Route(f"{prefix}/buyers/{{nid}}/stats", one, methods=["GET"]),
        Route(f"{prefix}/stats", every, methods=["GET"]),
        Route(
            f"{prefix}/buyers/{{nid}}/enforcement", enforcement, methods=["GET", "PUT", "DELETE"]
        ),
    ]
