"""``[buyer]``: one buyer (DSP / bidder) and its ``[[buyer.campaigns]]``. docs/buyer.md."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from cookiematch.buyer.campaigns import Audience, Campaign
from cookiematch.buyer.matchtag import ExchangeEndpoint
from cookiematch.buyer.model import BuyerSettings
from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.config.fields import (
    ADMIN_STORE_DEADLINE_MS,
    MIN_ADMIN_TOKEN_LENGTH,
    STORE_DEADLINE_MS,
    DeadlineMs,
    Table,
)
from cookiematch.config.values import Listen, Problems, Secret, url_problems
from cookiematch.exchange.model import ListId
from cookiematch.formats import CookieDomain, CookieName, Id, Nid, PositiveInt
from cookiematch.protocol.cookies import CookieSpec, cookie_spec

Price = Annotated[float, msgspec.Meta(ge=0, le=10_000)]


class CampaignConfig(Table, frozen=True):
    """``[[buyer.campaigns]]``: one simple bidding rule and its creative."""

    id: Id
    adm: str  # HTML; ${MATCH_TAG} is replaced by the match tag <img> (appended if absent)
    audience: Literal["matched", "any"] = "any"
    bid_price: Price = 0.0  # CPM (USD) for users the buyer does not know
    matched_bid_price: Price | None = None  # CPM for known users (default: bid_price)
    adomain: tuple[str, ...] = ()
    w: PositiveInt | None = None
    h: PositiveInt | None = None

    def problems(self) -> Problems:
        found: Problems = []
        if (self.w is None) != (self.h is None):
            found.append(("w", "give both w and h, or neither"))
        best = self.matched_bid_price if self.matched_bid_price is not None else self.bid_price
        if best <= 0 and self.bid_price <= 0:
            found.append(("bid_price", "never bids: set bid_price or matched_bid_price"))
        return found

    def to_model(self) -> Campaign:
        return Campaign(
            id=self.id,
            adm=self.adm,
            audience=Audience(self.audience),
            bid_price=self.bid_price,
            matched_bid_price=self.matched_bid_price,
            adomain=self.adomain,
            w=self.w,
            h=self.h,
        )


class BuyerRoleConfig(Table, frozen=True):
    """``[buyer]``: the buyer role. Its presence enables the role."""

    nid: Nid
    exchange_url: str  # the exchange's /pixel, absolute http(s)
    listen: Listen = Listen("127.0.0.1", 8800)
    public_url: str | None = None  # this buyer's base URL as browsers reach it
    # … as the exchange's servers reach it: the base of every bid's nurl (default public_url)
    win_notice_base_url: str | None = None
    # signs every bid's nurl (HKDF-derived key); None: derived from admin_token instead
    win_notice_key: Secret | None = None
    admin_token: Secret | None = None  # None: the admin API refuses every request
    store_deadline_ms: DeadlineMs = STORE_DEADLINE_MS  # each store call of a browser request
    admin_store_deadline_ms: DeadlineMs = ADMIN_STORE_DEADLINE_MS  # … of an admin request
    # signs the exchange's opt-out notices (POST /exchange/optout); None: the route is absent
    exchange_optout_secret: Secret | None = None
    response: Literal["gif", "204"] = "gif"
    hosted_match: bool = False
    # user lists (of this buyer, at the exchange) a pixel-matched browser is added to, with
    # google_ula on the way back to the exchange
    push_user_lists: tuple[ListId, ...] = ()
    match_ttl_days: PositiveInt = 14  # an entry older than this is stale: re-match
    entry_ttl_days: PositiveInt | None = None  # store TTL of entries; default 2x match_ttl
    cookie_name: CookieName = "buyer_uid"
    cookie_domain: CookieDomain | None = None
    cookie_secure: bool = True
    cookie_same_site: Literal["None", "Lax", "Strict"] = "None"  # None needs cookie_secure
    cookie_max_age_days: Annotated[int, msgspec.Meta(ge=1, le=400)] = 390
    tmax_ms: Annotated[int, msgspec.Meta(gt=0, le=10_000)] = 100
    tmax_margin_ms: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 10
    bid_log_size: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 200
    # "auto": the layout recorded in the store, else "buckets" on Redis, "keys" on SQLite
    match_table_layout: Literal["auto", "keys", "buckets"] = "auto"
    match_table_expected_entries: PositiveInt = 100_000_000  # sizes a new bucketed table
    # the match table's entries and stale ones are counted (a store scan) this often
    table_size_interval_seconds: Annotated[float, msgspec.Meta(ge=60)] = 600.0
    campaigns: tuple[CampaignConfig, ...] = ()

    def problems(self) -> Problems:
        found = url_problems("exchange_url", self.exchange_url)
        found += url_problems("public_url", self.public_url, query=False)
        found += url_problems("win_notice_base_url", self.win_notice_base_url, query=False)
        if self.admin_token is not None and len(self.admin_token) < MIN_ADMIN_TOKEN_LENGTH:
            found.append(("admin_token", f"must be at least {MIN_ADMIN_TOKEN_LENGTH} characters"))
        secret = self.exchange_optout_secret
        if secret is not None and len(secret) < MIN_ADMIN_TOKEN_LENGTH:
            found.append(
                ("exchange_optout_secret", f"must be at least {MIN_ADMIN_TOKEN_LENGTH} characters")
            )
        if self.win_notice_key is not None and len(self.win_notice_key) < MIN_ADMIN_TOKEN_LENGTH:
            found.append(
                ("win_notice_key", f"must be at least {MIN_ADMIN_TOKEN_LENGTH} characters")
            )
        if self.win_notice_secret() is None and (self.win_notice_base_url or self.public_url):
            found.append(
                (
                    "win_notice_key",
                    "required to sign the bids' nurl (public_url or win_notice_base_url is set)"
                    " when there is no admin_token to derive it from",
                )
            )
        if self.cookie_same_site == "None" and not self.cookie_secure:
            found.append(
                ("cookie_same_site", '"None" needs cookie_secure = true (browsers insist)')
            )
        if len(set(self.push_user_lists)) != len(self.push_user_lists):
            found.append(("push_user_lists", "lists a user list twice"))
        if self.entry_ttl_days is not None and self.entry_ttl_days < self.match_ttl_days:
            found.append(("entry_ttl_days", "must be at least match_ttl_days"))
        seen: set[str] = set()
        for i, campaign in enumerate(self.campaigns):
            if campaign.id in seen:
                found.append((f"campaigns[{i}].id", f"duplicate id {campaign.id!r}"))
            seen.add(campaign.id)
            found += [(f"campaigns[{i}].{key}", m) for key, m in campaign.problems()]
        return found

    def win_notice_secret(self) -> Secret | None:
        """What the win-notice key is derived from: ``win_notice_key``, else ``admin_token``."""
        return self.win_notice_key if self.win_notice_key is not None else self.admin_token

    def cookie_spec(self) -> CookieSpec:
        """The buyer cookie: ``HttpOnly``, and by default ``Secure; SameSite=None``."""
        return cookie_spec(self, same_site=self.cookie_same_site)

    def settings(self) -> BuyerSettings:
        entry_ttl_days = self.entry_ttl_days or 2 * self.match_ttl_days
        return BuyerSettings(
            exchange=ExchangeEndpoint(self.exchange_url, self.nid),
            hosted_match=self.hosted_match,
            push_user_lists=self.push_user_lists,
            stale_after_seconds=self.match_ttl_days * SECONDS_PER_DAY,
            entry_ttl_seconds=entry_ttl_days * SECONDS_PER_DAY,
            tmax_ms=self.tmax_ms,
            tmax_margin_ms=self.tmax_margin_ms,
            public_url=self.public_url,
            win_notice_base_url=self.win_notice_base_url,
        )

    def campaign_models(self) -> list[Campaign]:
        return [c.to_model() for c in self.campaigns]
