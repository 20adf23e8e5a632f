"""The buyer role's composition root: every buyer object is built here, once.

One server worker (``BuyerServer``): the privacy policy (one, from ``[privacy]``; the buyer is
its host), the match table (its layout settled with the store), the redirect handler's matcher,
the bidder with its campaigns and bid log, the win notices (signed ``nurl``s and ``/win``,
when bids carry one), their routes, the opt-out page and (with
``exchange_optout_secret``) the exchange's opt-out notices, the admin API with access and
erasure of one user, the console (``/console``, with its time series), the match table's
periodic count (``buyer/table_size.py``) and ``/metrics`` (the buyer's counters, the table's
size and the policy's decisions).
``subject_data`` is the one builder of the buyer's ``SubjectData``: the server's admin API and
opt-out page use it, and so does the CLI (``roots/subjects.py``). Its lifecycle is ``RoleServer``'s
(``roots/server.py``): the store opened and ``build`` run at startup, after the server forked;
everything released and the store closed, pending writes flushed, at shutdown.
"""

from __future__ import annotations

import os
import time

from cookiematch.buyer.bidder import Bidder
from cookiematch.buyer.bidlog import BidLog
from cookiematch.buyer.matching import Matcher
from cookiematch.buyer.matchtable import MatchTable
from cookiematch.buyer.optout import ExchangeOptOuts
from cookiematch.buyer.stats import BuyerStats
from cookiematch.buyer.subjects import BuyerSubjects
from cookiematch.buyer.table_size import MatchTableSizeLog
from cookiematch.buyer.wins import WinNotices, WinUrls
from cookiematch.config import Config
from cookiematch.config.buyer import BuyerRoleConfig
from cookiematch.errors import ConfigError
from cookiematch.protocol.win_notice import WIN_PATH, WinSigner
from cookiematch.roots.config_env import config_from_env
from cookiematch.roots.server import RoleServer, StoreDeadlines
from cookiematch.storage import Store
from cookiematch.web.buyer.admin import build_buyer_admin_app
from cookiematch.web.buyer.direct_match import DirectMatch
from cookiematch.web.buyer.metrics import MatchTableSizeCollector, buyer_counts
from cookiematch.web.buyer.optout import OPTOUT_PATH, BuyerOptOutCookie, exchange_optout_route
from cookiematch.web.buyer.routes import (
    NO_BID,
    NO_TAG,
    WIN_ON_ERROR,
    BuyerCookie,
    BuyerRoutes,
    WinRoute,
)
from cookiematch.web.console import SERIES_FAILED, build_console
from cookiematch.web.console import buyer as console_buyer
from cookiematch.web.optout import OPTOUT_ON_ERROR, OptOutFlow
from cookiematch.web.optout_page import OptOutPage
from cookiematch.web.router import App
from cookiematch.web.subjects import subject_routes

__all__ = ["BID_MAX_BODY", "BuyerServer", "app", "open_table", "subject_data"]

BID_MAX_BODY = 256 * 1024


def new_uid() -> bytes:
    return os.urandom(16)


def buyer_table(config: Config) -> BuyerRoleConfig:
    """The ``[buyer]`` table, which must be there."""
    if config.buyer is None:
        raise ConfigError("the configuration has no [buyer] table")
    return config.buyer


async def open_table(config: Config, store: Store) -> MatchTable:
    """The buyer's match table over ``store``: the layout recorded there wins, and a
    conflicting ``match_table_layout`` is a ConfigError."""
    buyer = buyer_table(config)
    settings = buyer.settings()
    return await MatchTable.open(
        store,
        settings.nid,
        ttl_seconds=settings.entry_ttl_seconds,
        clock=time.time,
        layout=buyer.match_table_layout,
        expected_entries=buyer.match_table_expected_entries,
        auto_layout="buckets" if config.store.url.startswith("redis") else "keys",
    )


def subject_data(config: Config, store: Store) -> BuyerSubjects:
    """Access and erasure of one buyer user (``buyer/subjects.py``) over ``store``."""
    buyer_table(config)
    return BuyerSubjects(lambda: open_table(config, store), clock=time.time)


class BuyerServer(RoleServer):
    """One buyer server worker; ``app`` is what granian serves."""

    role = "buyer"

    def __init__(self, config: Config) -> None:
        self.buyer = buyer_table(config)
        super().__init__(config, deadlines=StoreDeadlines.of(self.buyer), max_body=BID_MAX_BODY)
        self.settings = self.buyer.settings()
        self.campaigns = self.buyer.campaign_models()  # compiled now: a bad one fails the start
        self.stats = BuyerStats(buyer_counts())
        self.bid_log = BidLog(self.buyer.bid_log_size)
        self.matcher: Matcher | None = None

    def win_notices(self) -> tuple[WinUrls, WinNotices] | None:
        """Every bid's signed ``nurl`` and the ``/win`` that checks it, over the requests'
        store; None when bids carry no ``nurl`` (no ``win_notice_base_url`` nor ``public_url``)."""
        base, secret = self.settings.win_notice_base, self.buyer.win_notice_secret()
        if base is None or secret is None:  # the configuration requires a secret with a base
            return None
        nid = self.settings.nid
        signer = WinSigner.derive(secret.reveal().encode(), nid)
        notices = WinNotices(self.requests, signer, nid, self.stats, clock=time.time)
        return WinUrls(base, signer), notices

    async def build(self, store: Store) -> None:
        buyer, settings, app = self.buyer, self.settings, self.app
        subjects = subject_data(self.config, self.admin)
        admin_table = await subjects.table()  # settles the layout
        table = admin_table.over(self.requests)  # the browser-facing routes'
        policy = self.policy
        wins = self.win_notices()
        matcher = self.matcher = Matcher(
            table, settings, self.stats, policy=policy, new_uid=new_uid, clock=time.time
        )
        bidder = Bidder(
            table,
            self.campaigns,
            settings,
            self.stats,
            self.bid_log,
            policy=policy,
            clock=time.time,
            win_urls=None if wins is None else wins[0],
        )
        cookie = BuyerCookie(buyer.cookie_spec())
        routes = BuyerRoutes(matcher, bidder, cookie, pixel_204=buyer.response == "204")
        pixel_204 = buyer.response == "204"
        app.route("/match", routes.match, direct=DirectMatch(matcher, cookie, pixel_204=pixel_204))
        app.route("/push", routes.push)
        app.route("/matchtag", routes.matchtag, on_error=NO_TAG)
        app.route(
            "/bid",
            routes.bid,
            methods=("POST",),
            on_error=NO_BID,
            read_body=True,
            direct_body=routes.bid_answer,
        )
        if wins is not None:  # else the path is a 404: bids carry no nurl
            app.route(WIN_PATH, WinRoute(wins[1]), on_error=WIN_ON_ERROR)
        page = OptOutPage(settings.nid, path=OPTOUT_PATH, secure=buyer.cookie_secure)
        stats = self.stats
        optout = OptOutFlow(
            page,
            BuyerOptOutCookie(cookie, new_uid),
            subjects,
            count=lambda outcome: stats.add("optout_page", outcome),
        )
        app.route(
            OPTOUT_PATH,
            optout.handle,
            methods=("GET", "POST"),
            on_error=OPTOUT_ON_ERROR,
            read_body=True,
        )
        sizes = MatchTableSizeLog(
            admin_table.over(store),  # a whole-table scan: the backend itself, not the guard
            stale_after_seconds=settings.stale_after_seconds,
            interval_seconds=buyer.table_size_interval_seconds,
        )
        console_routes, series = build_console(
            self.role,
            buyer.admin_token,
            self.config.console,
            self.admin,
            console_buyer.SELECTIONS,
            console_buyer.buyer_pages(self.bid_log, sizes),
        )
        self.every(series.poll_seconds, series.tick, SERIES_FAILED)
        self.run(sizes.run())
        self.collect(MatchTableSizeCollector(sizes))
        extra = [
            *subject_routes(subjects),
            *self.metrics_routes(buyer.admin_token),
            *console_routes,
        ]
        if buyer.exchange_optout_secret is not None:  # else the path is a 404
            secret = buyer.exchange_optout_secret.reveal().encode()
            notices = ExchangeOptOuts(
                admin_table, settings.nid, secret, self.stats, clock=time.time
            )
            extra.append(exchange_optout_route(notices, self.stats))
        app.fallback = build_buyer_admin_app(
            matcher, bidder, buyer.admin_token, clock=time.time, extra_routes=extra
        )


def app() -> App:
    """granian's factory for a buyer worker."""
    return BuyerServer(config_from_env()).app
