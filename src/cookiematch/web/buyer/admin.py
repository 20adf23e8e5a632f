"""The buyer's admin API (``/admin/v1``, bearer token; errors are problem+json).

GET /admin/v1/health              no authentication
GET /admin/v1/matches/{gid}       {"gid", "buyer_uid", "cver", "updated_at", ...} or 404
GET /admin/v1/uids/{buyer_uid}    the same entry, looked up by the buyer's uid, or 404
GET /admin/v1/stats               {"nid", "counters": {event: {outcome: n}}, ...}
GET /admin/v1/bids/recent         {"bids": [...]} newest last; ?limit=N (default 50)
GET /admin/v1/openapi.json        this API's OpenAPI 3.1 document; no authentication

The root adds ``/metrics`` and the subject routes (``web/subjects.py``: ``GET``/``DELETE
/admin/v1/subjects/{buyer_uid}``), and the exchange's opt-out notices when configured
(``web/buyer/optout.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cookiematch.buyer.bidder import Bidder
from cookiematch.buyer.ids import format_uid, parse_gid, parse_uid
from cookiematch.buyer.matching import Matcher
from cookiematch.buyer.matchtable import MatchEntry
from cookiematch.clock import Clock
from cookiematch.config.values import Secret
from cookiematch.errors import AdminError, NotFound
from cookiematch.web.admin import HEALTH_ROUTE, PREFIX, guarded_app, json_response
from cookiematch.web.buyer.api_spec import (
    DESCRIPTION,
    MAX_RECENT,
    OPERATIONS,
    BuyerStats,
    Match,
    RecentBids,
)
from cookiematch.web.openapi import with_openapi

DEFAULT_RECENT = 50


class _Endpoints:
    def __init__(self, matcher: Matcher, bidder: Bidder, clock: Clock) -> None:
        self.matcher = matcher
        self.bidder = bidder
        self.clock = clock

    def _entry(self, entry: MatchEntry) -> Response:
        age = self.clock() - entry.updated_at
        return json_response(
            Match(
                gid=entry.gid,
                buyer_uid=format_uid(entry.uid),
                cver=entry.cver,
                updated_at=entry.updated_at,
                age_seconds=age,
                stale=age >= self.matcher.settings.stale_after_seconds,
            )
        )

    async def match(self, request: Request) -> Response:
        text: str = request.path_params["gid"]
        gid = parse_gid(text)
        entry = None if gid is None else await self.matcher.table.by_gid(gid)
        if entry is None:
            raise NotFound(f"no match for gid {text!r}")
        return self._entry(entry)

    async def uid(self, request: Request) -> Response:
        text: str = request.path_params["uid"]
        uid = parse_uid(text)
        entry = None if uid is None else await self.matcher.table.by_uid(uid)
        if entry is None:
            raise NotFound(f"no match for buyer uid {text!r}")
        return self._entry(entry)

    async def stats(self, request: Request) -> Response:
        settings = self.matcher.settings
        return json_response(
            BuyerStats(
                nid=settings.nid,
                hosted_match=settings.hosted_match,
                counters=self.matcher.stats.snapshot(),
                bids_logged=len(self.bidder.bid_log),
            )
        )

    async def recent_bids(self, request: Request) -> Response:
        text = request.query_params.get("limit", str(DEFAULT_RECENT))
        if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_RECENT))):
            raise AdminError("limit must be a non-negative integer")
        return json_response(RecentBids(self.bidder.bid_log.recent(int(text))))


def build_buyer_admin_app(
    matcher: Matcher,
    bidder: Bidder,
    admin_token: Secret | None,
    *,
    clock: Clock,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The buyer's admin ASGI application; without a token every guarded path is refused.
    Each ``/admin/v1`` route has its operation in ``OPERATIONS`` (``web/buyer/api_spec.py``),
    from which ``/admin/v1/openapi.json`` is written."""
    endpoints = _Endpoints(matcher, bidder, clock)
    routes: list[BaseRoute] = [
        HEALTH_ROUTE,
        Route(f"{PREFIX}/matches/{{gid}}", endpoints.match, methods=["GET"]),
        Route(f"{PREFIX}/uids/{{uid}}", endpoints.uid, methods=["GET"]),
        Route(f"{PREFIX}/stats", endpoints.stats, methods=["GET"]),
        Route(f"{PREFIX}/bids/recent", endpoints.recent_bids, methods=["GET"]),
        *extra_routes,
    ]
    described = with_openapi("cookiematch buyer admin API", DESCRIPTION, routes, OPERATIONS)
    return guarded_app(described, admin_token if admin_token is not None else "")
