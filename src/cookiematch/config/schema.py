"""The configuration file's shape: one frozen msgspec Struct per TOML table, defaults beside
their fields. docs/configuration.md describes every key.

A role is enabled by the presence of its table: adding a role is one Struct and one optional
field of :class:`Config`. Checks that span several entries (duplicates, references) live in
``problems()`` methods, next to the fields they check.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from cookiematch.config.buyer import BuyerRoleConfig
from cookiematch.config.dmp import DmpConfig
from cookiematch.config.fields import MIN_ADMIN_TOKEN_LENGTH, Table
from cookiematch.config.values import KeySecret, Listen, Problems, Secret, duplicates, proxy_network
from cookiematch.exchange.model import Buyer, ExchangeSettings, Publisher, UserList
from cookiematch.formats import BidderURL, CookieDomain, CookieName, Nid, PositiveInt
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.protocol.userid import MAX_KEY_VERSION
from cookiematch.storage.base import Durability

MAX_LIST_ID = 2**63 - 1


class StoreConfig(Table, frozen=True):
    """``[store]``: where state lives."""

    # sqlite:///abs/path, sqlite://relative/path (to the config file's directory), redis://...
    url: str = "sqlite://var/cookiematch.db"
    durability: Durability = Durability.ACK

    def problems(self) -> Problems:
        scheme, sep, rest = self.url.partition("://")
        if not sep or not scheme or not rest:
            return [("url", f"expected scheme://location, got {self.url!r}")]
        return []


class KeyConfig(Table, frozen=True):
    """``[[exchange.keys]]``: one version of the user-ID encryption key."""

    version: Annotated[int, msgspec.Meta(ge=0, le=MAX_KEY_VERSION)]
    secret: KeySecret


class BuyerConfig(Table, frozen=True):
    """``[[exchange.buyers]]``: one buyer account; also the admin API's buyer body."""

    nid: Nid
    redirect_url: RedirectTemplate  # compiled (and so validated) while loading
    hosted_match: bool = False
    hosted_match_writes_per_second: Annotated[float, msgspec.Meta(gt=0)] | None = None
    bidder_url: BidderURL | None = None  # OpenRTB 2.6 endpoint (POST); none: no bid requests
    push_url: RedirectTemplate | None = None  # pixel-matching URL, compiled like redirect_url
    pixel_matching: bool = False
    require_hosted_match: bool = False
    max_qps: Annotated[float, msgspec.Meta(gt=0)] | None = None

    def problems(self) -> Problems:
        found: Problems = []
        if self.pixel_matching and self.push_url is None:
            found.append(("push_url", "required when pixel_matching = true"))
        if self.require_hosted_match and not self.hosted_match:
            found.append(("require_hosted_match", "needs hosted_match = true"))
        return found

    def to_model(self) -> Buyer:
        return Buyer(
            nid=self.nid,
            redirect=self.redirect_url,
            hosted_match=self.hosted_match,
            hosted_match_writes_per_second=self.hosted_match_writes_per_second,
            bidder_url=self.bidder_url,
            push_url=self.push_url,
            pixel_matching=self.pixel_matching,
            require_hosted_match=self.require_hosted_match,
            max_qps=self.max_qps,
        )


class PublisherConfig(Table, frozen=True):
    """``[[exchange.publishers]]``: a site whose pages call ``/ad?pub=<id>``."""

    id: Nid
    pixel_matching: bool = True  # false: the publisher opts out of the additional match

    def to_model(self) -> Publisher:
        return Publisher(id=self.id, pixel_matching=self.pixel_matching)


class UserListConfig(Table, frozen=True):
    """``[[exchange.user_lists]]``: one user list; also the admin API's user list body."""

    id: Annotated[int, msgspec.Meta(gt=0, le=MAX_LIST_ID)]
    owner: Nid
    closed: bool = False
    membership_days: Annotated[int, msgspec.Meta(ge=1, le=540)] = 30

    def to_model(self) -> UserList:
        return UserList(
            id=self.id,
            owner=self.owner,
            closed=self.closed,
            membership_days=self.membership_days,
        )


class ExchangeConfig(Table, frozen=True):
    """``[exchange]``: the Cookie Matching Service. Its presence enables the role."""

    listen: Listen = Listen("127.0.0.1", 8700)
    trusted_proxies: tuple[str, ...] = ()
    admin_token: Secret | None = None  # None: the admin API is not served
    set_cookie_by_default: bool = False
    extras_position: Literal["before", "after"] = "before"
    cookie_name: CookieName = "cm_id"
    cookie_domain: CookieDomain | None = None
    cookie_secure: bool = True
    cookie_max_age_days: Annotated[int, msgspec.Meta(ge=1, le=400)] = 390  # browsers cap at 400
    hosted_match_ttl_days: PositiveInt = 90
    push_token_ttl_seconds: PositiveInt = 3600
    match_expiry_days: PositiveInt = 14
    auction_timeout_ms: Annotated[int, msgspec.Meta(ge=10, le=10_000)] = 120
    keys: tuple[KeyConfig, ...] = ()
    buyers: tuple[BuyerConfig, ...] = ()
    user_lists: tuple[UserListConfig, ...] = ()
    publishers: tuple[PublisherConfig, ...] = ()

    def problems(self) -> Problems:
        found: Problems = []
        for i, entry in enumerate(self.trusted_proxies):
            try:
                proxy_network(entry)
            except ValueError as exc:
                found.append((f"trusted_proxies[{i}]", str(exc)))
        if self.admin_token is not None and len(self.admin_token) < MIN_ADMIN_TOKEN_LENGTH:
            found.append(("admin_token", f"must be at least {MIN_ADMIN_TOKEN_LENGTH} characters"))
        if not self.keys:
            found.append(("keys", "at least one [[exchange.keys]] entry is required"))
        found += duplicates("keys", "version", [k.version for k in self.keys])
        found += duplicates("buyers", "nid", [b.nid for b in self.buyers])
        found += duplicates("user_lists", "id", [u.id for u in self.user_lists])
        found += duplicates("publishers", "id", [p.id for p in self.publishers])
        for i, buyer in enumerate(self.buyers):
            found += [(f"buyers[{i}].{key}", message) for key, message in buyer.problems()]
        nids = {b.nid for b in self.buyers}
        for i, user_list in enumerate(self.user_lists):
            if user_list.owner not in nids:
                found.append((f"user_lists[{i}].owner", f"no buyer has nid {user_list.owner!r}"))
        return found

    def buyer_models(self) -> list[Buyer]:
        return [b.to_model() for b in self.buyers]

    def user_list_models(self) -> list[UserList]:
        return [u.to_model() for u in self.user_lists]

    def publisher_models(self) -> list[Publisher]:
        return [p.to_model() for p in self.publishers]

    def key_secrets(self) -> dict[int, bytes]:
        """Key version -> 32-byte secret; the highest version is the current one."""
        return {k.version: k.secret.key_bytes() for k in self.keys}

    def settings(self) -> ExchangeSettings:
        return ExchangeSettings(
            set_cookie_by_default=self.set_cookie_by_default,
            extras_first=self.extras_position == "before",
            cookie_name=self.cookie_name,
            cookie_domain=self.cookie_domain,
            cookie_secure=self.cookie_secure,
            cookie_max_age_days=self.cookie_max_age_days,
            hosted_match_ttl_days=self.hosted_match_ttl_days,
            push_token_ttl_seconds=self.push_token_ttl_seconds,
            match_expiry_days=self.match_expiry_days,
            auction_timeout_ms=self.auction_timeout_ms,
            trusted_proxies=frozenset(proxy_network(p) for p in self.trusted_proxies),
        )


class Config(Table, frozen=True):
    """The whole file. Role tables are optional; a missing one leaves the role off."""

    store: StoreConfig = StoreConfig()
    exchange: ExchangeConfig | None = None
    buyer: BuyerRoleConfig | None = None
    dmp: DmpConfig | None = None

    @property
    def roles(self) -> frozenset[str]:
        """Names of the enabled roles (the role tables present), e.g. ``{"exchange"}``."""
        return frozenset(
            name
            for name in self.__struct_fields__
            if name not in SECTIONS_WITHOUT_ROLE and getattr(self, name) is not None
        )

    def problems(self) -> Problems:
        found: Problems = []
        for name in self.__struct_fields__:
            table = getattr(self, name)
            if table is not None:
                found += [(f"{name}.{key}", message) for key, message in table.problems()]
        return found


SECTIONS_WITHOUT_ROLE = frozenset({"store"})
