"""The exchange role's composition root: every exchange object is built here, once.

One server worker (``ExchangeServer``): the user-ID cipher, push tokens (from the configured
keys) and the privacy policy (``[privacy]``), at once; then in the App's startup hook (after
the server forked) the store, the registry of buyers and user lists, the per-buyer monitor,
the Cookie Matching Service, the auction with its bid transport and pixel matcher, their
routes, the admin API (buyers, user lists, bulk members, stats) and ``/metrics`` (with the
privacy policy's decisions); two background tasks (registry refresh, monitoring). Everything
is closed, pending writes flushed, in the shutdown hook.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time

from cookiematch.config import Config, ExchangeConfig
from cookiematch.errors import ConfigError
from cookiematch.exchange.ad_service import AdService
from cookiematch.exchange.auction import Auction
from cookiematch.exchange.cookie_match import CookieMatchService
from cookiematch.exchange.monitoring import BuyerMonitor
from cookiematch.exchange.pixel_matching import PixelMatcher
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.exchange.user_list_bulk import UserListBulk
from cookiematch.protocol.cookies import cookie_spec
from cookiematch.protocol.push import PushTokens
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.roots.config_env import config_from_env
from cookiematch.roots.server import RoleServer
from cookiematch.storage import Store
from cookiematch.web.exchange.ad import (
    BLANK_AD,
    AdRoutes,
    count_metric,
)
from cookiematch.web.exchange.admin import (
    build_admin_app,
    stats_routes,
    user_list_members_route,
)
from cookiematch.web.exchange.routes import (
    OPTOUT_ON_ERROR,
    BrowserCookie,
    ExchangeRoutes,
)
from cookiematch.web.forwarded import ProxyTrust
from cookiematch.web.metrics import METRICS_ROUTE
from cookiematch.web.outbound import BidTransport
from cookiematch.web.router import App

__all__ = ["ExchangeServer", "app"]

log = logging.getLogger(__name__)

REGISTRY_REFRESH_SECONDS = 2.0


def new_browser_id() -> bytes:
    return os.urandom(16)


def exchange_table(config: Config) -> ExchangeConfig:
    """The ``[exchange]`` table, which must be there."""
    if config.exchange is None:
        raise ConfigError("the configuration has no [exchange] table")
    return config.exchange


class ExchangeServer(RoleServer):
    """One exchange server worker; ``app`` is what granian serves."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.exchange = exchange = exchange_table(config)
        self.settings = settings = exchange.settings()
        self.cipher = UserIdCipher(exchange.key_secrets())
        self.push_tokens = PushTokens(self.cipher, ttl_seconds=settings.push_token_ttl_seconds)
        self.monitor: BuyerMonitor | None = None
        self.service: CookieMatchService | None = None
        self.transport: BidTransport | None = None

    async def build(self, store: Store) -> None:
        settings, app = self.settings, self.app
        registry = ExchangeRegistry(store, self.exchange.buyers, self.exchange.user_lists)
        await registry.refresh()
        monitor = self.monitor = BuyerMonitor(
            store,
            settings,
            clock=time.time,
            worker_id=f"{os.getpid()}-{os.urandom(3).hex()}",
            on_count=count_metric,
        )
        service = self.service = CookieMatchService(
            registry=registry,
            store=store,
            cipher=self.cipher,
            push_tokens=self.push_tokens,
            settings=settings,
            clock=time.time,
            new_browser_id=new_browser_id,
            monitor=monitor,
            policy=self.policy,
        )
        transport = self.transport = BidTransport()
        ads = AdService(
            registry=registry,
            publishers=self.exchange.publishers,
            store=store,
            cipher=self.cipher,
            auction=Auction(transport, monitor, clock=time.monotonic),
            pixel_matcher=PixelMatcher(
                cipher=self.cipher,
                push_tokens=self.push_tokens,
                settings=settings,
                monitor=monitor,
                clock=time.time,
                random=random.Random().random,
            ),
            settings=settings,
            clock=time.time,
            new_browser_id=new_browser_id,
            new_auction_id=lambda: os.urandom(16).hex(),
            policy=self.policy,
        )
        cookie = BrowserCookie(cookie_spec(settings))
        proxies = ProxyTrust(settings.trusted_proxies)
        routes = ExchangeRoutes(service, cookie, proxies, new_browser_id)
        ad_routes = AdRoutes(ads, cookie, proxies, transport)
        app.route("/pixel", routes.pixel)
        app.route("/optout", routes.optout, on_error=OPTOUT_ON_ERROR)
        app.route("/ad", ad_routes.ad, on_error=BLANK_AD)
        token = self.exchange.admin_token
        app.fallback = build_admin_app(
            registry,
            token if token is not None else "",
            extra_routes=[
                METRICS_ROUTE,
                *stats_routes(registry, monitor),
                user_list_members_route(
                    UserListBulk(registry, store, self.cipher, clock=time.time)
                ),
            ],
        )
        self.run(self._refresh_forever(registry))
        self.run(monitor.run(lambda: [b.nid for b in registry.buyers() if b.pixel_matching]))

    async def close(self) -> None:
        if self.transport is not None:
            await self.transport.aclose()
        if self.monitor is not None:
            await self.monitor.close()

    @staticmethod
    async def _refresh_forever(registry: ExchangeRegistry) -> None:
        """Pick up admin changes made through other workers."""
        while True:
            await asyncio.sleep(REGISTRY_REFRESH_SECONDS)
            try:
                await registry.refresh()
            except Exception:
                log.exception("refreshing buyers and user lists failed; keeping the last view")


def app() -> App:
    """granian's factory for an exchange worker."""
    return ExchangeServer(config_from_env()).app
