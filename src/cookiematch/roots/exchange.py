"""The exchange role's composition root: every exchange object is built here, once.

One server worker (``ExchangeServer``): the user-ID cipher, push tokens (from the configured
keys) and the privacy policy (``[privacy]``), at once; then in the App's startup hook (after
the server forked) the store, the registry of buyers and user lists (noting the hosted
buyers), the per-buyer monitor, the shared match-tag rate limit and the enforcement of the
monitored rules, the Cookie Matching Service, the auction with its bid
transport and pixel matcher, the access and erasure of one browser (``exchange_subjects``,
with the queue of opt-out notices) and the notices' delivery with its transport, their routes
(``/pixel``, ``/optout``, ``/ad``), the admin API (buyers, user lists, bulk members, stats,
subjects, enforcement, buyers' credentials, which it also accepts), the console
(``/console``, with its time series) and ``/metrics`` (with the privacy policy's decisions);
the background tasks (registry refresh, monitoring, rate-limit sync, enforcement, notice
delivery, table sizes, user-list change counts, console series). With ``edge_dir``, the edge's
snapshot of the buyers, rewritten after each registry refresh (``edge/live.py``), and the
collector of the match tags the edge answered (``edge/matches.py``). Everything is closed,
pending writes flushed, in the shutdown hook.

``subject_data(config, store)`` is the CLI's access and erasure (``roots/subjects.py``): the
same ``exchange_subjects``, over the buyers of the file and the store read afresh each time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from cookiematch.config import Config, ExchangeConfig
from cookiematch.edge.live import LiveSnapshot
from cookiematch.edge.matches import EdgeMatches
from cookiematch.errors import ConfigError
from cookiematch.exchange.ad_service import AdService
from cookiematch.exchange.auction import Auction
from cookiematch.exchange.check_process import ChecksProcess
from cookiematch.exchange.cookie_match import CookieMatchService
from cookiematch.exchange.enforcement import Enforcer
from cookiematch.exchange.hosted_nids import HostedNids
from cookiematch.exchange.list_changes import ListChanges
from cookiematch.exchange.model import Buyer
from cookiematch.exchange.monitoring import BuyerMonitor
from cookiematch.exchange.notice_delivery import NoticeDelivery
from cookiematch.exchange.optout_notices import NoticeQueue
from cookiematch.exchange.pixel_matching import PixelMatcher
from cookiematch.exchange.rate_limit import SharedRateLimit
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.exchange.subjects import ExchangeSubjects
from cookiematch.exchange.table_sizes import TableSizeLog
from cookiematch.exchange.user_list_bulk import UserListBulk
from cookiematch.protocol.cookies import cookie_spec
from cookiematch.protocol.push import PushTokens
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.roots.config_env import config_from_env
from cookiematch.roots.server import RoleServer, StoreDeadlines
from cookiematch.storage import Store
from cookiematch.web.console import SERIES_FAILED, build_console
from cookiematch.web.console import exchange as console_exchange
from cookiematch.web.counters import SHARED
from cookiematch.web.exchange import metrics
from cookiematch.web.exchange.ad import (
    BLANK_AD,
    AdRoutes,
    count_metric,
)
from cookiematch.web.exchange.admin import (
    build_admin_app,
    stats_routes,
    user_list_members_route,
    user_list_stats_route,
)
from cookiematch.web.exchange.credentials import authenticator, credential_routes
from cookiematch.web.exchange.direct_pixel import DirectPixel
from cookiematch.web.exchange.optout import ExchangeOptOutCookie, count_optout
from cookiematch.web.exchange.routes import BrowserCookie, ExchangeRoutes
from cookiematch.web.forwarded import ProxyTrust
from cookiematch.web.optout import OPTOUT_ON_ERROR, OptOutFlow
from cookiematch.web.optout_page import OptOutPage
from cookiematch.web.outbound import BidTransport, NoticeTransport
from cookiematch.web.router import App
from cookiematch.web.subjects import subject_routes

__all__ = ["ExchangeServer", "app", "exchange_subjects", "subject_data"]

log = logging.getLogger(__name__)

REGISTRY_REFRESH_SECONDS = 2.0
EDGE_COLLECT_SECONDS = 0.5
OPERATOR = "cookiematch exchange"  # how the opt-out page names the exchange


def new_browser_id() -> bytes:
    return os.urandom(16)


def new_notice_id() -> str:
    return os.urandom(16).hex()


def exchange_table(config: Config) -> ExchangeConfig:
    """The ``[exchange]`` table, which must be there."""
    if config.exchange is None:
        raise ConfigError("the configuration has no [exchange] table")
    return config.exchange


def exchange_subjects(
    exchange: ExchangeConfig,
    store: Store,
    buyers: Callable[[], Awaitable[Sequence[Buyer]]],
    *,
    cipher: UserIdCipher | None = None,
    hosted_nids: HostedNids | None = None,
    on_queued: Callable[[Sequence[str]], None] | None = None,
) -> ExchangeSubjects:
    """The exchange's access and erasure of one browser, with its queue of notices: the one
    builder of the server (admin API, opt-out page; it hands its own cipher and hosted-buyer
    list) and the CLI."""
    settings = exchange.settings()
    notices = NoticeQueue(
        store,
        cipher or UserIdCipher(exchange.key_secrets()),
        settings,
        clock=time.time,
        new_id=new_notice_id,
        on_queued=on_queued,
    )
    hosted = hosted_nids or HostedNids(store, settings, clock=time.time)
    return ExchangeSubjects(store, hosted, notices, buyers)


def subject_data(config: Config, store: Store) -> ExchangeSubjects:
    """``roots/subjects.py``'s builder for the CLI: the buyers of the file and the store,
    read afresh at each access or erasure."""
    exchange = exchange_table(config)
    registry = ExchangeRegistry(store, exchange.buyers, exchange.user_lists)

    async def buyers() -> Sequence[Buyer]:
        await registry.refresh()
        return registry.buyers()

    return exchange_subjects(exchange, store, buyers)


class ExchangeServer(RoleServer):
    """One exchange server worker; ``app`` is what granian serves."""

    role = "exchange"

    def __init__(self, config: Config) -> None:
        exchange = exchange_table(config)
        super().__init__(config, deadlines=StoreDeadlines.of(exchange))
        self.exchange = exchange
        self.settings = settings = exchange.settings()
        self.cipher = UserIdCipher(exchange.key_secrets())
        self.push_tokens = PushTokens(self.cipher, ttl_seconds=settings.push_token_ttl_seconds)
        self.monitor: BuyerMonitor | None = None
        self.list_changes: ListChanges | None = None
        self.enforcer: Enforcer | None = None
        self.service: CookieMatchService | None = None
        self.transport: BidTransport | None = None
        self.notice_transport: NoticeTransport | None = None
        self.edge_matches: EdgeMatches | None = None

    async def build(self, store: Store) -> None:
        settings, app = self.settings, self.app
        requests, admin = self.requests, self.admin  # the store behind its deadlines
        worker_id = f"{os.getpid()}-{os.urandom(3).hex()}"
        hosted_nids = HostedNids(admin, settings, clock=time.time)
        registry = ExchangeRegistry(
            admin,
            self.exchange.buyers,
            self.exchange.user_lists,
            self.exchange.credentials,
            on_buyers=hosted_nids.note,
        )
        await registry.refresh()
        list_changes = self.list_changes = ListChanges(
            admin, worker_id=worker_id, clock=time.time, on_count=metrics.count_list_change
        )
        store_settings = self.config.store
        checks_process = ChecksProcess(  # the checks' Python off this worker's loop and GIL
            store_settings.url, store_settings.durability, settings, self.deadlines.admin
        )
        monitor = self.monitor = BuyerMonitor(
            admin,
            settings,
            clock=time.time,
            worker_id=worker_id,
            on_count=count_metric,
            checks_process=checks_process,
        )
        if self.app.served:  # started before the first request; it ends with the worker
            await checks_process.prepare()  # (its pipe closes), whatever start-up does next
        SHARED.before_collect(monitor.fold)  # a scrape sees every match tag answered here
        limiter = SharedRateLimit(admin, clock=time.monotonic, worker_id=worker_id)
        enforcer = self.enforcer = Enforcer(
            admin,
            monitor,
            limiter,
            settings.enforcement,
            registry.buyers,
            holder=worker_id,
            interval=settings.enforcement_interval_seconds,
            on_states=metrics.enforcement_states,
        )
        service = self.service = CookieMatchService(
            registry=registry,
            store=requests,
            cipher=self.cipher,
            push_tokens=self.push_tokens,
            settings=settings,
            clock=time.time,
            new_browser_id=new_browser_id,
            monitor=monitor,
            policy=self.policy,
            list_changes=list_changes,
            admit=enforcer.admit_match_tag,
            limited=enforcer.limits_match_tags,
        )
        transport = self.transport = BidTransport()
        ads = AdService(
            registry=registry,
            publishers=self.exchange.publishers,
            store=requests,
            cipher=self.cipher,
            auction=Auction(transport, monitor, clock=time.monotonic),
            pixel_matcher=PixelMatcher(
                cipher=self.cipher,
                push_tokens=self.push_tokens,
                settings=settings,
                monitor=monitor,
                clock=time.time,
                random=random.Random().random,
                suspended=enforcer.pixel_matching_suspended,
            ),
            settings=settings,
            clock=time.time,
            new_browser_id=new_browser_id,
            new_auction_id=lambda: os.urandom(16).hex(),
            policy=self.policy,
        )
        wake_delivery = asyncio.Event()

        def queued(nids: Sequence[str]) -> None:
            metrics.count_queued(nids)
            wake_delivery.set()

        async def current_buyers() -> Sequence[Buyer]:
            return registry.buyers()

        subjects = exchange_subjects(
            self.exchange,
            admin,
            current_buyers,
            cipher=self.cipher,
            hosted_nids=hosted_nids,
            on_queued=queued,
        )
        notice_transport = self.notice_transport = NoticeTransport()
        delivery = NoticeDelivery(
            subjects.notices,
            admin,
            registry.buyer,
            notice_transport,
            settings,
            clock=time.time,
            holder=worker_id,
            on_event=metrics.count_notice,
            on_depth=metrics.notice_depth,
            wake=wake_delivery,
        )
        cookie = BrowserCookie(cookie_spec(settings))
        proxies = ProxyTrust(settings.trusted_proxies)
        routes = ExchangeRoutes(service, cookie, proxies)
        optout = OptOutFlow(
            OptOutPage(OPERATOR, secure=settings.cookie_secure),
            ExchangeOptOutCookie(cookie, new_browser_id),
            subjects,
            count=count_optout,
        )
        ad_routes = AdRoutes(ads, cookie, proxies, transport)
        common = service.common
        direct = None if common is None else DirectPixel(common, cookie.spec.name, proxies)
        app.route("/pixel", routes.pixel, direct=direct)
        app.route(
            "/optout",
            optout.handle,
            methods=("GET", "POST"),
            read_body=True,
            on_error=OPTOUT_ON_ERROR,
        )
        app.route("/ad", ad_routes.ad, on_error=BLANK_AD)
        # whole-table scans: the backend itself, not the guard
        sizes = TableSizeLog(store, interval_seconds=settings.table_sizes_interval_seconds)
        token = self.exchange.admin_token
        bulk = UserListBulk(registry, admin, self.cipher, clock=time.time, changes=list_changes)
        console_routes, series = build_console(
            self.role,
            token,
            self.config.console,
            admin,
            console_exchange.SELECTIONS,
            console_exchange.exchange_pages(registry, monitor, sizes),
            authenticate=authenticator(registry) if token is not None else None,
            still_valid=console_exchange.still_valid(registry),
        )
        app.fallback = build_admin_app(
            registry,
            token if token is not None else "",
            extra_routes=[
                *self.metrics_routes(self.exchange.admin_token),
                *stats_routes(registry, monitor, enforcer),
                user_list_members_route(registry, bulk),
                user_list_stats_route(registry, sizes, list_changes),
                *credential_routes(registry),
                *subject_routes(subjects),
                *console_routes,
            ],
            authenticate=authenticator(registry),
            max_user_lists_per_buyer=settings.max_user_lists_per_buyer,
        )
        refresh = registry.refresh
        if self.exchange.edge_dir is not None:
            snapshot = LiveSnapshot(
                Path(self.exchange.edge_dir),
                cipher=self.cipher,
                policy=self.policy,
                extras_first=settings.extras_first,
                enforcement=settings.enforcement,
                cookie_name=settings.cookie_name,
                limited=enforcer.limits_match_tags,
            )
            snapshot.update(registry.buyers())

            async def refresh() -> None:  # ... and the edge's snapshot of them
                await registry.refresh()
                try:
                    snapshot.update(registry.buyers())
                except (OSError, ConfigError):
                    log.exception("writing the edge's snapshot failed; the edge keeps its last")

        self.every(  # admin changes made through other workers
            REGISTRY_REFRESH_SECONDS,
            refresh,
            "refreshing buyers and user lists failed; keeping the last view",
        )
        self.run(monitor.run(lambda: [b.nid for b in registry.buyers() if b.pixel_matching]))
        self.run(limiter.run(enforcer.limits))
        self.run(enforcer.run())
        self.run(delivery.run())
        self.run(list_changes.run())
        self.run(sizes.run())
        self.every(series.poll_seconds, series.tick, SERIES_FAILED)
        self.collect(metrics.TableSizesCollector(sizes))
        if self.exchange.edge_dir is not None:
            self.edge(Path(self.exchange.edge_dir), monitor)

    def edge(self, directory: Path, monitor: BuyerMonitor) -> None:
        """Collect the match tags the edge in ``directory`` answered (``edge/matches.py``):
        monitored and counted as those this server answers."""
        collector = self.edge_matches = EdgeMatches(
            directory, UserIdCipher(self.exchange.key_secrets())
        )

        async def collect() -> None:
            while True:
                read = await asyncio.to_thread(collector.step)
                for nid, browser_id, at in read.matches:
                    monitor.gid_issued(nid, browser_id, at=at)
                metrics.count_edge_matches((m[0] for m in read.matches), read.unreadable)
                if not read.more:
                    return

        self.every(
            EDGE_COLLECT_SECONDS, collect, "collecting the edge's match tags failed; retrying"
        )

    async def close(self) -> None:
        if self.transport is not None:
            await self.transport.aclose()
        if self.notice_transport is not None:
            await self.notice_transport.aclose()
        if self.enforcer is not None:
            await self.enforcer.close()
        if self.monitor is not None:
            await self.monitor.close()
        if self.list_changes is not None:
            await self.list_changes.close()
        if self.edge_matches is not None:
            self.edge_matches.close()


def app() -> App:
    """granian's factory for an exchange worker."""
    return ExchangeServer(config_from_env()).app
