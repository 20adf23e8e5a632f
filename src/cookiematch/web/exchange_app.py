"""Wiring of the exchange role: configuration in, an ``App`` out.

The factory only reads configuration; the store is opened in the App's startup hook (in each
worker, after the server forked), and closed (pending writes flushed) at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time

from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route as StarletteRoute

from cookiematch.config import Config, ExchangeConfig
from cookiematch.exchange.ad_service import AdService
from cookiematch.exchange.auction import Auction
from cookiematch.exchange.cookie_match import CookieMatchService
from cookiematch.exchange.monitoring import BuyerMonitor
from cookiematch.exchange.pixel_matching import PixelMatcher
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.exchange.user_list_bulk import UserListBulk
from cookiematch.protocol.push import PushTokens
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage import Store, connect_store
from cookiematch.web import metrics
from cookiematch.web.admin import build_admin_app, user_list_members_route
from cookiematch.web.exchange_ad import (
    BLANK_AD,
    AdRoutes,
    HttpxBidTransport,
    count_metric,
    stats_routes,
)
from cookiematch.web.exchange_routes import BrowserCookie, ExchangeRoutes, cookie_spec
from cookiematch.web.http import Request, Response
from cookiematch.web.router import App

log = logging.getLogger(__name__)

REGISTRY_REFRESH_SECONDS = 2.0
OPTOUT_ON_ERROR = Response.text(400, "The request could not be processed; please retry.\n")


def new_browser_id() -> bytes:
    return os.urandom(16)


async def metrics_endpoint(_: StarletteRequest) -> StarletteResponse:
    body, content_type = metrics.exposition()
    return StarletteResponse(body, media_type=content_type)


class ExchangeRuntime:
    """The exchange's live objects in one worker: built at startup, closed at shutdown."""

    def __init__(self, config: Config, exchange: ExchangeConfig) -> None:
        self.config = config
        self.exchange = exchange
        self.settings = exchange.settings()
        self.cipher = UserIdCipher(exchange.key_secrets())
        self.push_tokens = PushTokens(self.cipher, ttl_seconds=self.settings.push_token_ttl_seconds)
        self.store: Store | None = None
        self.routes: ExchangeRoutes | None = None
        self.ad_routes: AdRoutes | None = None
        self.monitor: BuyerMonitor | None = None
        self.transport: HttpxBidTransport | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._monitoring: asyncio.Task[None] | None = None

    async def start(self, app: App) -> None:
        store = await connect_store(self.config.store.url, durability=self.config.store.durability)
        self.store = store
        registry = ExchangeRegistry(
            store, self.exchange.buyer_models(), self.exchange.user_list_models()
        )
        await registry.refresh()
        monitor = BuyerMonitor(
            store,
            self.settings,
            clock=time.time,
            worker_id=f"{os.getpid()}-{os.urandom(3).hex()}",
            on_count=count_metric,
        )
        self.monitor = monitor
        service = CookieMatchService(
            registry=registry,
            store=store,
            cipher=self.cipher,
            push_tokens=self.push_tokens,
            settings=self.settings,
            clock=time.time,
            new_browser_id=new_browser_id,
            monitor=monitor,
        )
        self.routes = ExchangeRoutes(service, self.settings, new_browser_id)
        self.ad_routes = self._ad_routes(registry, store, monitor, self.routes)
        token = self.exchange.admin_token
        app.fallback = build_admin_app(
            registry,
            token if token is not None else "",
            extra_routes=[
                StarletteRoute("/metrics", metrics_endpoint, methods=["GET"]),
                *stats_routes(registry, monitor),
                user_list_members_route(
                    UserListBulk(registry, store, self.cipher, clock=time.time)
                ),
            ],
        )
        self._refresher = asyncio.create_task(self._refresh_forever(registry))
        self._monitoring = asyncio.create_task(
            monitor.run(lambda: [b.nid for b in registry.buyers() if b.pixel_matching])
        )

    def _ad_routes(
        self,
        registry: ExchangeRegistry,
        store: Store,
        monitor: BuyerMonitor,
        routes: ExchangeRoutes,
    ) -> AdRoutes:
        self.transport = HttpxBidTransport()
        rng = random.Random()
        matcher = PixelMatcher(
            cipher=self.cipher,
            push_tokens=self.push_tokens,
            settings=self.settings,
            monitor=monitor,
            clock=time.time,
            random=rng.random,
        )
        service = AdService(
            registry=registry,
            publishers=self.exchange.publisher_models(),
            store=store,
            cipher=self.cipher,
            auction=Auction(self.transport, monitor, clock=time.monotonic),
            pixel_matcher=matcher,
            settings=self.settings,
            clock=time.time,
            new_browser_id=new_browser_id,
            new_auction_id=lambda: os.urandom(16).hex(),
        )
        return AdRoutes(
            service, BrowserCookie(cookie_spec(self.settings)), routes.scheme, self.transport
        )

    async def stop(self) -> None:
        for task in (self._refresher, self._monitoring):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.transport is not None:
            await self.transport.aclose()
        if self.monitor is not None:
            await self.monitor.close()
        if self.store is not None:
            await self.store.close()

    async def _refresh_forever(self, registry: ExchangeRegistry) -> None:
        """Pick up admin changes made through other workers."""
        while True:
            await asyncio.sleep(REGISTRY_REFRESH_SECONDS)
            try:
                await registry.refresh()
            except Exception:
                log.exception("refreshing buyers and user lists failed; keeping the last view")

    async def pixel(self, request: Request) -> Response:
        assert self.routes is not None, "exchange not started"
        return await self.routes.pixel(request)

    async def optout(self, request: Request) -> Response:
        assert self.routes is not None, "exchange not started"
        return await self.routes.optout(request)

    async def ad(self, request: Request) -> Response:
        assert self.ad_routes is not None, "exchange not started"
        return await self.ad_routes.ad(request)


def build_exchange_app(config: Config) -> App:
    """The exchange's App: ``/pixel``, ``/optout``, ``/ad``, the admin API and ``/metrics``."""
    exchange = config.exchange
    if exchange is None:
        raise ValueError("the configuration has no [exchange] table")
    runtime = ExchangeRuntime(config, exchange)
    app = App()
    app.on_startup.append(lambda: runtime.start(app))
    app.on_shutdown.append(runtime.stop)
    app.route("/pixel", runtime.pixel)
    app.route("/optout", runtime.optout, on_error=OPTOUT_ON_ERROR)
    app.route("/ad", runtime.ad, on_error=BLANK_AD)
    return app
