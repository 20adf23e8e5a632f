"""The configuration file's shape: one frozen msgspec Struct per TOML table, defaults beside
their fields. docs/configuration.md describes every key.

A role is enabled by the presence of its table: adding a role is one Struct and one optional
field of :class:`Config`. Checks that span several entries (duplicates, references) live in
``problems()`` methods, next to the fields they check. The exchange's entries (buyers, user
lists, publishers) and settings are the domain's Structs (``exchange/model.py``), so the file,
the admin API and the store read and write one format.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from cookiematch.config.buyer import BuyerRoleConfig
from cookiematch.config.dmp import DmpConfig
from cookiematch.config.fields import (
    ADMIN_STORE_DEADLINE_MS,
    MIN_ADMIN_TOKEN_LENGTH,
    STORE_DEADLINE_MS,
    DeadlineMs,
    Table,
)
from cookiematch.config.privacy import PrivacyConfig
from cookiematch.config.values import (
    KeySecret,
    Listen,
    Problems,
    Secret,
    duplicates,
    proxy_network,
)
from cookiematch.exchange.model import Buyer, Credential, ExchangeSettings, Publisher, UserList
from cookiematch.protocol.userid import MAX_KEY_VERSION
from cookiematch.storage.base import Durability
from cookiematch.storage.registry import SCHEMES


class StoreConfig(Table, frozen=True):
    """``[store]``: where state lives."""

    # sqlite:///abs/path, sqlite://relative/path (to the config file's directory), redis://...
    url: str = "sqlite://var/cookiematch.db"
    durability: Durability = Durability.ACK

    def problems(self) -> Problems:
        scheme, sep, rest = self.url.partition("://")
        if not sep or not scheme or not rest:
            return [("url", f"expected scheme://location, got {self.url!r}")]
        if scheme.lower() not in SCHEMES:
            known = ", ".join(sorted(SCHEMES))
            return [("url", f"unknown storage scheme {scheme!r} (known: {known})")]
        return []


MetricsAccess = Literal["open", "token"]


class MetricsConfig(Table, frozen=True):
    """``[metrics]``: who may read each role's ``/metrics`` and where (docs/operations.md)."""

    # open: anyone who reaches the listener; token: the role's admin_token (bearer)
    access: MetricsAccess = "open"
    # a role's own metrics listener: /metrics is served there, not on the role's listener
    exchange_listen: Listen | None = None
    buyer_listen: Listen | None = None
    dmp_listen: Listen | None = None

    def listen_for(self, role: str) -> Listen | None:
        """The metrics listener of ``role``, or None (``/metrics`` on the role's listener)."""
        listen: Listen | None = getattr(self, f"{role}_listen", None)
        return listen

    def problems(self) -> Problems:
        return []


class ConsoleConfig(Table, frozen=True):
    """``[console]``: the operator console of every role's admin listener (docs/console.md)."""

    # seconds between two points of the console's time series (one worker records each)
    sample_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 60
    # how long a point is kept in the store
    retention_hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 31)] = 48
    # how long a login lasts
    session_minutes: Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 60)] = 480

    def problems(self) -> Problems:
        return []


class KeyConfig(Table, frozen=True):
    """``[[exchange.keys]]``: one version of the user-ID encryption key."""

    version: Annotated[int, msgspec.Meta(ge=0, le=MAX_KEY_VERSION)]
    secret: KeySecret


class ExchangeConfig(ExchangeSettings, Table, frozen=True):
    """``[exchange]``: the Cookie Matching Service. Its presence enables the role.

    The keys its services read are those of :class:`ExchangeSettings`; this table adds the
    role's wiring and its entries, which are the domain's own Structs.
    """

    listen: Listen = Listen("127.0.0.1", 8700)
    admin_token: Secret | None = None  # None: the admin API is not served
    store_deadline_ms: DeadlineMs = STORE_DEADLINE_MS  # each store call of a browser request
    admin_store_deadline_ms: DeadlineMs = ADMIN_STORE_DEADLINE_MS  # … of an admin request
    keys: tuple[KeyConfig, ...] = ()
    buyers: tuple[Buyer, ...] = ()
    user_lists: tuple[UserList, ...] = ()
    publishers: tuple[Publisher, ...] = ()
    credentials: tuple[Credential, ...] = ()  # buyers' API credentials, as token hashes
    # the edge's directory (`cookiematch edge render --out`): the server keeps its snapshot
    # of buyers current and collects the match tags it answered (docs/edge.md); None: no edge
    edge_dir: str | None = None

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
        if self.store_deadline_ms >= self.auction_timeout_ms:  # /ad reads within its auction
            found.append(("store_deadline_ms", "must be below auction_timeout_ms"))
        if self.optout_notice_retry_first_seconds > self.optout_notice_retry_max_seconds:
            message = "must not exceed optout_notice_retry_max_seconds"
            found.append(("optout_notice_retry_first_seconds", message))
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
        owners = {u.id: u.owner for u in self.user_lists}
        for i, buyer in enumerate(self.buyers):
            found += [(f"buyers[{i}].{k}", m) for k, m in buyer.list_problems(owners.get)]
        found += duplicates(
            "credentials", "token_sha256", [c.token_sha256 for c in self.credentials]
        )
        for i, credential in enumerate(self.credentials):
            found += [(f"credentials[{i}].{k}", m) for k, m in credential.problems()]
            if credential.nid not in nids:
                found.append((f"credentials[{i}].nid", f"no buyer has nid {credential.nid!r}"))
        return found

    def key_secrets(self) -> dict[int, bytes]:
        """Key version -> 32-byte secret; the highest version is the current one."""
        return {k.version: k.secret.key_bytes() for k in self.keys}

    def settings(self) -> ExchangeSettings:
        """The keys the exchange's services read, without the wiring (keys, admin token...)."""
        return msgspec.convert(self, ExchangeSettings, from_attributes=True)


class Config(Table, frozen=True):
    """The whole file. Role tables are optional; a missing one leaves the role off."""

    store: StoreConfig = StoreConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    metrics: MetricsConfig = MetricsConfig()
    console: ConsoleConfig = ConsoleConfig()
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
        return found + self._metrics_problems()

    def _metrics_problems(self) -> Problems:
        """Each enabled role's metrics listener is its own (every worker binds it with
        SO_REUSEPORT: a shared port would mix two roles' scrapes silently), and ``access =
        "token"`` needs the role's admin token (else nobody could read it)."""
        found: Problems = []
        taken: dict[Listen, str] = {}
        for role in sorted(self.roles):
            table = getattr(self, role)
            listen = self.metrics.listen_for(role)
            if listen is not None:
                for other, place in [(table.listen, f"{role}.listen"), *taken.items()]:
                    if (listen.host, listen.port) == (other.host, other.port) and listen.port:
                        found.append((f"metrics.{role}_listen", f"the same address as {place}"))
                taken[listen] = f"metrics.{role}_listen"
            if self.metrics.access == "token" and table.admin_token is None:
                found.append(("metrics.access", f'"token" needs [{role}] admin_token'))
        return found


SECTIONS_WITHOUT_ROLE = frozenset({"store", "privacy", "metrics", "console"})
