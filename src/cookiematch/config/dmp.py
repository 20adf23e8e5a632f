"""``[dmp]``: the DMP role's table, its clients and partners as data (docs/dmp.md).

Partner sync URLs are compiled and test-rendered here, while loading, so a bad template stops
the start with an error naming ``dmp.partners[i].sync_url``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.config.dmp_segments import (
    MAX_INTERVAL_MINUTES,
    MIN_INTERVAL_MINUTES,
    DmpDestinationConfig,
    DmpSegmentConfig,
    segment_problems,
)
from cookiematch.config.fields import (
    ADMIN_STORE_DEADLINE_MS,
    MIN_ADMIN_TOKEN_LENGTH,
    STORE_DEADLINE_MS,
    DeadlineMs,
    Table,
)
from cookiematch.config.values import (
    KeySecret,
    Listen,
    Problems,
    Secret,
    duplicates,
    origin_problems,
    url_problems,
)
from cookiematch.dmp.analytics.settings import MEMORY_LIMIT_MB, AnalyticsSettings, Engine
from cookiematch.dmp.lifetimes import EXPORT_STATE_MARGIN_DAYS
from cookiematch.dmp.model import (
    CMP_WAIT_MS,
    Client,
    DmpSettings,
    IdFormat,
    OtherTag,
    Partner,
    TagKind,
)
from cookiematch.dmp.traits.schema import TraitCatalog, TraitDef, TraitKind
from cookiematch.errors import RedirectURLError
from cookiematch.formats import CookieDomain, CookieName, Id, PositiveInt, VendorId
from cookiematch.protocol.cookies import CookieSpec, cookie_spec
from cookiematch.protocol.privacy import MAX_CONSENT_LENGTH, MAX_GPP_LENGTH, PrivacySignals
from cookiematch.protocol.templates import Macro, MacroValues, SyncTemplate

MAX_RECOMPUTE_MINUTES = MAX_INTERVAL_MINUTES

UidMacro = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_$%{}\[\]().~*!-]{1,32}$")]

# Test renders at start: nothing, and the longest values a request may carry.
_SAMPLE_UID = "A" * 22
_FULL_PRIVACY = PrivacySignals(
    gdpr="1",
    gdpr_consent="C" * MAX_CONSENT_LENGTH,
    us_privacy="1YNN",
    gpp="D" * MAX_GPP_LENGTH,
    gpp_sid=",".join(["2"] * 32),
)


class DmpTagConfig(Table, frozen=True):
    """``[[dmp.clients.tags]]``: another tag the container fires on the client's pages."""

    id: Id
    url: str
    kind: Literal["image", "script"] = "image"
    cap: PositiveInt | None = None  # at most this many fires per period; none: every page
    cap_period_hours: PositiveInt = 24
    gvl_vendor_id: VendorId | None = None  # the vendor the tag serves, for the privacy policy

    def problems(self) -> Problems:
        try:
            template = SyncTemplate.compile(self.url)
        except RedirectURLError as exc:
            return [("url", str(exc).replace("sync URL", "tag URL"))]
        if template.slots:
            return [("url", "a tag URL takes no macros")]
        return []

    def to_model(self) -> OtherTag:
        return OtherTag(
            self.id, self.url, TagKind(self.kind), self.cap, self.cap_period_hours,
            self.gvl_vendor_id,
        )  # fmt: skip


class DmpClientConfig(Table, frozen=True):
    """``[[dmp.clients]]``: a customer site that embeds the container tag."""

    id: Id
    # Page origins allowed to call /sync with credentials (CORS), e.g. "https://shop.example".
    allowed_origins: tuple[str, ...] = ()
    partners: tuple[Id, ...] | None = None  # none: every partner
    tags: tuple[DmpTagConfig, ...] = ()
    # how long the container tag waits for the page's CMP before it calls /sync without it
    cmp_wait_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = CMP_WAIT_MS

    def problems(self, partner_ids: set[str]) -> Problems:
        found: Problems = []
        for i, origin in enumerate(self.allowed_origins):
            found += origin_problems(f"allowed_origins[{i}]", origin)
        for i, partner in enumerate(self.partners or ()):
            if partner not in partner_ids:
                found.append((f"partners[{i}]", f"no partner has id {partner!r}"))
        found += duplicates("tags", "id", [t.id for t in self.tags])
        for i, tag in enumerate(self.tags):
            found += [(f"tags[{i}].{key}", message) for key, message in tag.problems()]
        return found

    def to_model(self) -> Client:
        return Client(
            id=self.id,
            allowed_origins=frozenset(o.lower() for o in self.allowed_origins),
            partners=None if self.partners is None else frozenset(self.partners),
            tags=tuple(t.to_model() for t in self.tags),
            cmp_wait_ms=self.cmp_wait_ms,
        )


class DmpPartnerConfig(Table, frozen=True):
    """``[[dmp.partners]]``: an integration partner, as data."""

    id: Id
    sync_url: str  # a template with ${CALLBACK_URL}, ${DMP_UID} and privacy macros
    uid_macro: UidMacro = "$UID"  # what the partner replaces with its ID in the callback
    ttl_days: PositiveInt = 7
    priority: int = 0  # higher first
    enabled: bool = True
    id_format: Literal["plain", "signed", "encrypted"] = "plain"
    id_key: KeySecret | None = None  # 32 bytes, base64; HMAC key or AES-256-GCM key
    id_max_age_seconds: PositiveInt = SECONDS_PER_DAY
    gvl_vendor_id: VendorId | None = None  # its IAB GVL vendor ID, for the privacy policy
    # its redirect to /callback/<id> may cookie a browser the DMP does not know (docs/dmp.md)
    initiates_sync: bool = False
    # Ingestion (docs/dmp-data.md): bearer token of POST /api/v1/partners/<id>/records, and
    # the partner's data endpoint: the server pulls it every pull_interval_minutes (and
    # `cookiematch dmp pull` or the admin API when asked).
    ingest_token: Secret | None = None
    pull_url: str | None = None
    pull_token: Secret | None = None
    pull_interval_minutes: Annotated[
        float, msgspec.Meta(ge=MIN_INTERVAL_MINUTES, le=MAX_INTERVAL_MINUTES)
    ] = 60
    pull_page_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000

    def template(self) -> SyncTemplate:
        return SyncTemplate.compile(self.sync_url)

    def problems(self, settings: DmpSettings) -> Problems:
        if self.ingest_token is not None and len(self.ingest_token) < MIN_ADMIN_TOKEN_LENGTH:
            return [("ingest_token", f"must be at least {MIN_ADMIN_TOKEN_LENGTH} characters")]
        bad_url = url_problems("pull_url", self.pull_url)
        if bad_url:
            return bad_url
        if self.id_format != "plain" and self.id_key is None:
            return [("id_key", f"required when id_format is {self.id_format!r}")]
        try:
            template = self.template()
            if not template.macros & {Macro.CALLBACK_URL, Macro.DMP_UID}:
                raise RedirectURLError("must contain ${CALLBACK_URL} or ${DMP_UID}")
            partner = self.to_model(settings, template)
            callback = settings.callback_url(partner, "client")
            template.test_render(
                {
                    "empty": MacroValues(callback, _SAMPLE_UID),
                    "maximal": MacroValues(callback, _SAMPLE_UID, _FULL_PRIVACY),
                }
            )
        except RedirectURLError as exc:
            return [("sync_url", str(exc))]
        return []

    def to_model(self, settings: DmpSettings, template: SyncTemplate | None = None) -> Partner:
        return Partner(
            id=self.id,
            sync=template or self.template(),
            uid_macro=self.uid_macro,
            ttl_days=self.ttl_days,
            priority=self.priority,
            enabled=self.enabled,
            id_format=IdFormat(self.id_format),
            id_key=None if self.id_key is None else self.id_key.key_bytes(),
            id_max_age_seconds=self.id_max_age_seconds,
            gvl_vendor_id=self.gvl_vendor_id,
            initiates_sync=self.initiates_sync,
        )


class DmpTraitConfig(Table, frozen=True):
    """``[[dmp.traits]]``: a declared trait (attribute or event): its type and lifetime."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    type: Literal["string", "number", "bool", "list", "event"] = "string"
    ttl_days: PositiveInt = 90

    def to_model(self) -> TraitDef:
        return TraitDef(self.name, TraitKind(self.type), self.ttl_days * SECONDS_PER_DAY)


class DmpIngestConfig(Table, frozen=True):
    """``[dmp.ingest]``: defaults for undeclared traits, pending records, HTTP batch limits."""

    attribute_ttl_days: PositiveInt = 90  # undeclared attributes
    event_ttl_days: PositiveInt = 90  # undeclared events
    max_events_per_name: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 50
    unknown_traits: Literal["accept", "reject"] = "accept"
    pending_ttl_days: PositiveInt = 30
    max_batch_records: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 10_000
    max_batch_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1 << 30)] = 10 * 1024 * 1024
    idempotency_ttl_hours: PositiveInt = 24


class DmpAnalyticsConfig(Table, frozen=True):
    """``[dmp.analytics]``: the analytics engine of the batch half (``dmp/analytics/``)."""

    # "duckdb" (embedded) or "spark" (Apache Spark over Parquet, the `spark` extra): the
    # scheduled recompute, the CLI's recompute, overlap and exports run on it; "off": the
    # recompute runs per profile on the key-value store, and there are no exports
    engine: Engine | Literal["off"] = "duckdb"
    # DuckDB's database file, Spark's directory of tables; relative: to the configuration
    # file's directory
    path: Annotated[str, msgspec.Meta(min_length=1)] = "var/dmp-analytics.duckdb"
    # past this the engine spills to temp_directory (None: <path>.tmp)
    memory_limit_mb: Annotated[int, msgspec.Meta(ge=64, le=1 << 22)] = MEMORY_LIMIT_MB
    temp_directory: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    threads: Annotated[int, msgspec.Meta(ge=1, le=1024)] | None = None  # None: one per core
    # Spark's master URL (spark://host:7077, yarn, ...); None: local mode, local[threads or 2]
    master: Annotated[str, msgspec.Meta(min_length=1)] | None = None

    def to_model(self) -> AnalyticsSettings | None:
        """The engine's settings; None when it is off."""
        if self.engine == "off":
            return None
        return AnalyticsSettings(
            self.path,
            self.memory_limit_mb,
            self.temp_directory,
            self.threads,
            self.engine,
            self.master,
        )


class DmpConfig(Table, frozen=True):
    """``[dmp]``: the DMP role. Its presence enables the role."""

    listen: Listen = Listen("127.0.0.1", 8720)
    public_url: str | None = None  # as browsers reach this DMP; default http://<listen>
    admin_token: Secret | None = None  # None: the admin API is not served
    store_deadline_ms: DeadlineMs = STORE_DEADLINE_MS  # each store call of a browser request
    admin_store_deadline_ms: DeadlineMs = ADMIN_STORE_DEADLINE_MS  # … of an admin request
    cookie_name: CookieName = "dmp_id"
    cookie_domain: CookieDomain | None = None
    cookie_secure: bool = True
    cookie_max_age_days: Annotated[int, msgspec.Meta(ge=1, le=400)] = 390
    max_syncs_per_page: Annotated[int, msgspec.Meta(ge=0, le=50)] = 5
    match_ttl_days: PositiveInt = 390
    # Segment memberships and export state (dmp/lifetimes.py); none: match_ttl_days, and that
    # plus EXPORT_STATE_MARGIN_DAYS. Export state must outlive memberships.
    membership_ttl_days: PositiveInt | None = None
    export_state_ttl_days: PositiveInt | None = None
    max_events_per_profile: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 200
    event_ttl_days: PositiveInt = 90
    inband_max_bytes: Annotated[int, msgspec.Meta(ge=64, le=8192)] = 1024
    inband_max_pairs: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    # Page origins whose scripts may read /audiences as JSONP (?callback=), checked against the
    # request's Origin, else its Referer; empty: JSONP off (docs/dmp.md).
    jsonp_origins: tuple[str, ...] = ()
    clients: tuple[DmpClientConfig, ...] = ()
    partners: tuple[DmpPartnerConfig, ...] = ()
    traits: tuple[DmpTraitConfig, ...] = ()
    ingest: DmpIngestConfig = DmpIngestConfig()
    segments: tuple[DmpSegmentConfig, ...] = ()  # config/dmp_segments.py
    # The server recomputes every segment this long after the last recompute; 0: never.
    # On the analytics engine a recompute reloads only the profiles changed since the last.
    recompute_interval_minutes: Annotated[int, msgspec.Meta(ge=0, le=MAX_RECOMPUTE_MINUTES)] = 5
    destinations: tuple[DmpDestinationConfig, ...] = ()
    # The one directory a ``file`` destination set through the admin API may write into (an
    # absolute path); None: such destinations come from this file only (the API refuses them).
    export_directory: str | None = None
    analytics: DmpAnalyticsConfig = DmpAnalyticsConfig()

    def base_url(self) -> str:
        if self.public_url is not None:
            return self.public_url.rstrip("/")
        return f"http://{self.listen}"

    def membership_ttl(self) -> float:
        """Seconds a segment membership lives from its last write."""
        return (self.membership_ttl_days or self.match_ttl_days) * SECONDS_PER_DAY

    def export_state_ttl(self) -> float:
        """Seconds an export's record of what it sent lives from its last write."""
        if self.export_state_ttl_days is not None:
            return self.export_state_ttl_days * SECONDS_PER_DAY
        return self.membership_ttl() + EXPORT_STATE_MARGIN_DAYS * SECONDS_PER_DAY

    def cookie_spec(self) -> CookieSpec:
        """The DMP's browser cookie."""
        return cookie_spec(self)

    def settings(self) -> DmpSettings:
        return DmpSettings(
            public_url=self.base_url(),
            max_syncs_per_page=self.max_syncs_per_page,
            match_ttl_days=self.match_ttl_days,
            max_events_per_profile=self.max_events_per_profile,
            event_ttl_days=self.event_ttl_days,
            inband_max_bytes=self.inband_max_bytes,
            inband_max_pairs=self.inband_max_pairs,
            jsonp_origins=frozenset(o.lower() for o in self.jsonp_origins),
        )

    def problems(self) -> Problems:
        found: Problems = []
        if self.admin_token is not None and len(self.admin_token) < MIN_ADMIN_TOKEN_LENGTH:
            found.append(("admin_token", f"must be at least {MIN_ADMIN_TOKEN_LENGTH} characters"))
        if self.public_url is not None:
            bad_url = origin_problems("public_url", self.base_url())
            if bad_url:
                return found + bad_url
        for i, origin in enumerate(self.jsonp_origins):
            found += origin_problems(f"jsonp_origins[{i}]", origin)
        if self.export_directory is not None and not self.export_directory.startswith("/"):
            found.append(("export_directory", "must be an absolute path"))
        found += duplicates("partners", "id", [p.id for p in self.partners])
        found += duplicates("clients", "id", [c.id for c in self.clients])
        found += duplicates("traits", "name", [t.name for t in self.traits])
        settings = self.settings()
        for i, partner in enumerate(self.partners):
            found += [(f"partners[{i}].{k}", m) for k, m in partner.problems(settings)]
        partner_ids = {p.id for p in self.partners}
        for i, client in enumerate(self.clients):
            found += [(f"clients[{i}].{k}", m) for k, m in client.problems(partner_ids)]
        found += segment_problems(self.segments, self.destinations, partner_ids)
        if self.analytics.engine == "off" and self.destinations:
            found.append(
                (
                    "destinations",
                    'need the analytics engine ([dmp.analytics] engine is "off"): exports read '
                    'their deltas from it ("duckdb", the default, is embedded and needs no '
                    'server; "spark" runs beyond one machine)',
                )
            )
        if self.analytics.engine != "off" and self.analytics.path == ":memory:":
            found.append(
                (
                    "analytics.path",
                    'cannot be ":memory:": the engine owns the profiles\' traits, which must '
                    "outlive each job (give a file)",
                )
            )
        if self.export_state_ttl() < self.membership_ttl():
            found.append(
                (
                    "export_state_ttl_days",
                    "must be at least membership_ttl_days (a lapsed membership is removed from "
                    "a destination by the ID its export state keeps)",
                )
            )
        return found

    def trait_catalog(self) -> TraitCatalog:
        ingest = self.ingest
        return TraitCatalog(
            traits={t.name: t.to_model() for t in self.traits},
            attribute_ttl=ingest.attribute_ttl_days * SECONDS_PER_DAY,
            event_ttl=ingest.event_ttl_days * SECONDS_PER_DAY,
            max_events_per_name=ingest.max_events_per_name,
            reject_unknown=ingest.unknown_traits == "reject",
        )

    def partner_models(self) -> list[Partner]:
        settings = self.settings()
        return [p.to_model(settings) for p in self.partners]

    def client_models(self) -> list[Client]:
        return [c.to_model() for c in self.clients]
