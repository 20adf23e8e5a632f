"""Wiring of the buyer role: configuration in, an ``App`` out.

The factory only reads configuration; the store is opened in the App's startup hook (in each
worker, after the server forked) and closed (pending writes flushed) at shutdown.
"""

from __future__ import annotations

import os
import time

from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route as StarletteRoute

from cookiematch.buyer.bidder import Bidder
from cookiematch.buyer.bidlog import BidLog
from cookiematch.buyer.matching import Matcher
from cookiematch.buyer.matchtable import MatchTable
from cookiematch.buyer.stats import BuyerStats
from cookiematch.config import Config
from cookiematch.config.buyer import BuyerRoleConfig
from cookiematch.protocol.cookies import CookieSpec
from cookiematch.storage import Store, connect_store
from cookiematch.web import buyer_metrics, metrics
from cookiematch.web.buyer_admin import build_buyer_admin_app
from cookiematch.web.buyer_routes import NO_BID, NO_TAG, BuyerRoutes
from cookiematch.web.http import Request, Response
from cookiematch.web.router import App

BID_MAX_BODY = 256 * 1024


def new_uid() -> bytes:
    return os.urandom(16)


async def metrics_endpoint(_: StarletteRequest) -> StarletteResponse:
    body, content_type = metrics.exposition()
    return StarletteResponse(body, media_type=content_type)


def cookie_spec(buyer: BuyerRoleConfig) -> CookieSpec:
    """The buyer cookie: ``HttpOnly``, and by default ``Secure; SameSite=None``."""
    return CookieSpec(
        name=buyer.cookie_name,
        max_age=buyer.cookie_max_age_days * 86400,
        secure=buyer.cookie_secure,
        same_site=buyer.cookie_same_site,
        domain=buyer.cookie_domain,
    )


class BuyerRuntime:
    """The buyer's live objects in one worker: built at startup, closed at shutdown."""

    def __init__(self, config: Config, buyer: BuyerRoleConfig) -> None:
        self.config = config
        self.buyer = buyer
        self.settings = buyer.settings()
        self.stats = BuyerStats()
        self.bid_log = BidLog(buyer.bid_log_size)
        self.store: Store | None = None
        self.routes: BuyerRoutes | None = None
        self._collector: buyer_metrics.BuyerStatsCollector | None = None

    async def start(self, app: App) -> None:
        store = await connect_store(self.config.store.url, durability=self.config.store.durability)
        self.store = store
        try:  # the layout recorded in the store wins; a conflicting one is a ConfigError
            table = await MatchTable.open(
                store,
                self.settings.nid,
                ttl_seconds=self.settings.entry_ttl_seconds,
                clock=time.time,
                layout=self.buyer.match_table_layout,
                expected_entries=self.buyer.match_table_expected_entries,
                auto_layout="buckets" if self.config.store.url.startswith("redis") else "keys",
            )
        except BaseException:
            self.store = None
            await store.close()
            raise
        matcher = Matcher(table, self.settings, self.stats, new_uid=new_uid, clock=time.time)
        bidder = Bidder(
            table, self.buyer.campaign_models(), self.settings, self.stats, self.bid_log,
            clock=time.time,
        )  # fmt: skip
        self.routes = BuyerRoutes(
            matcher, bidder, cookie_spec(self.buyer), pixel_204=self.buyer.response == "204"
        )
        app.fallback = build_buyer_admin_app(
            matcher,
            bidder,
            self.buyer.admin_token,
            clock=time.time,
            extra_routes=[StarletteRoute("/metrics", metrics_endpoint, methods=["GET"])],
        )
        self._collector = buyer_metrics.register(self.stats)

    async def stop(self) -> None:
        if self._collector is not None:
            buyer_metrics.unregister(self._collector)
        if self.store is not None:
            await self.store.close()

    def _routes(self) -> BuyerRoutes:
        assert self.routes is not None, "buyer not started"
        return self.routes

    async def match(self, request: Request) -> Response:
        return await self._routes().match(request)

    async def push(self, request: Request) -> Response:
        return await self._routes().push(request)

    async def matchtag(self, request: Request) -> Response:
        return await self._routes().matchtag(request)

    async def bid(self, request: Request) -> Response:
        return await self._routes().bid(request)


def build_buyer_app(config: Config) -> App:
    """The buyer's App: ``/match``, ``/push``, ``/matchtag``, ``/bid``, admin and metrics."""
    buyer = config.buyer
    if buyer is None:
        raise ValueError("the configuration has no [buyer] table")
    runtime = BuyerRuntime(config, buyer)
    app = App(max_body=BID_MAX_BODY)
    app.on_startup.append(lambda: runtime.start(app))
    app.on_shutdown.append(runtime.stop)
    app.route("/match", runtime.match)
    app.route("/push", runtime.push)
    app.route("/matchtag", runtime.matchtag, on_error=NO_TAG)
    app.route("/bid", runtime.bid, methods=("POST",), on_error=NO_BID, read_body=True)
    return app
