"""The DMP role's composition root: every DMP object is built here, once.

    DmpCore     what every DMP process shares (the server's workers and the CLI's ``dmp
                ingest``, ``pull``, ``segments``, ``export``, ``overlap`` and ``subject``): the
                store, the match table, one profile reader, the segments, the trait writes, the
                ingestor, the access and erasure of one browser, the batch jobs on the analytics
                engine (``EngineRuns``: the engine opened per job under a lease, never for a
                worker's lifetime: DuckDB allows one writing process), wired to each other, and
                the funnel the ingestion counts into (a CLI run writes it under a key of its
                own when it ends, failed or not, and rolls up the keys of processes gone, so
                ``/admin/v1/funnel`` adds it up: ``dmp/funnel_log.py``)
    DmpServer   one server worker: the privacy policy, the core, the browser-facing service
                and its routes, the admin and ingestion APIs (and /metrics), the console (with
                its time series), the funnel flusher
                (and its roll-up),
                the definitions changed through the admin API (partners, segments, destinations,
                refreshed from the store) and the schedules (recompute, pulls, exports)

Hooks are constructor arguments and read top to bottom in ``build_core`` and
``DmpServer.start``: a trait change re-evaluates the browser's segments; a sync callback applies
the ingested records that waited for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.config import Config
from cookiematch.config.dmp import DmpConfig
from cookiematch.dmp.analytics.engine import AnalyticsEngine
from cookiematch.dmp.analytics.engines import open_engine as open_configured_engine
from cookiematch.dmp.analytics.lookup import EngineTraits
from cookiematch.dmp.analytics.runs import EngineRuns, OpenEngine
from cookiematch.dmp.change_marks import MARKING, NOT_MARKING, ChangeMarks
from cookiematch.dmp.funnel import Funnel
from cookiematch.dmp.funnel_log import FunnelLog, roll_up
from cookiematch.dmp.ingest import Ingestor, build_ingestor
from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.profiles import TraitSource
from cookiematch.dmp.schedule import Schedule, ScheduleSet
from cookiematch.dmp.segment_exports import SegmentExports
from cookiematch.dmp.segments.membership import Memberships
from cookiematch.dmp.segments.schedule import RECOMPUTE_JOB
from cookiematch.dmp.segments.service import SegmentService
from cookiematch.dmp.segments.source import StoredProfiles
from cookiematch.dmp.segments.updater import RecomputeReport
from cookiematch.dmp.service import DmpService
from cookiematch.dmp.subjects import DmpSubjects, StoredSubjects
from cookiematch.dmp.traits.reader import ProfileReader
from cookiematch.dmp.traits.staging import TraitStaging
from cookiematch.dmp.traits.writes import TraitStore
from cookiematch.errors import ConfigError, StorageError
from cookiematch.privacy.subjects import SubjectData
from cookiematch.protocol.cookies import format_browser_id
from cookiematch.protocol.url import parse_url
from cookiematch.roots.config_env import config_from_env
from cookiematch.roots.server import RoleServer, StoreDeadlines
from cookiematch.storage import Durability, Store, connect_store
from cookiematch.web.admin import guarded_app
from cookiematch.web.console import SERIES_FAILED, build_console
from cookiematch.web.console import dmp as console_dmp
from cookiematch.web.dmp.admin import DmpAdmin
from cookiematch.web.dmp.api_spec import (
    DESCRIPTION,
    INGEST_TOKEN,
    INGEST_TOKEN_DESCRIPTION,
    PREFIXES,
    operations,
)
from cookiematch.web.dmp.definitions import DmpDefinitions
from cookiematch.web.dmp.definitions_admin import DefinitionAdmin
from cookiematch.web.dmp.direct_callback import DirectCallback
from cookiematch.web.dmp.ingest import build_ingest_api
from cookiematch.web.dmp.jobs import DmpJobs
from cookiematch.web.dmp.metrics import funnel_counts, staged_set_aside
from cookiematch.web.dmp.optout import DmpOptOutCookie
from cookiematch.web.dmp.routes import SYNC_ON_ERROR, TEXT_ON_ERROR, DmpRoutes
from cookiematch.web.dmp.schedules import ScheduleAdmin
from cookiematch.web.dmp.segments import SegmentAdmin
from cookiematch.web.openapi import with_openapi
from cookiematch.web.optout import OPTOUT_ON_ERROR, OptOutFlow
from cookiematch.web.optout_page import OptOutPage
from cookiematch.web.outbound import PartnerTransport
from cookiematch.web.router import App
from cookiematch.web.subjects import subject_routes

__all__ = ["DmpCore", "DmpServer", "app", "build_core", "dmp_table", "open_core", "subject_data"]

log = logging.getLogger(__name__)

FUNNEL_FLUSH_SECONDS = 1.0
FUNNEL_ROLLUP_SECONDS = 60.0
DEFINITIONS_REFRESH_SECONDS = 1.0


def dmp_table(config: Config) -> DmpConfig:
    """The ``[dmp]`` table, which must be there."""
    if config.dmp is None:
        raise ConfigError("the configuration has no [dmp] table")
    return config.dmp


@dataclass(frozen=True, slots=True)
class DmpCore:
    """The DMP's shared collaborators over one store."""

    store: Store
    matches: MatchTable
    profile_reader: ProfileReader  # the one reader: admin profiles and segment rules alike
    segments: SegmentService
    exports: SegmentExports
    traits: TraitStore
    ingestor: Ingestor
    subjects: DmpSubjects  # the admin API's, the CLI's, the opt-out page's (StoredSubjects)
    funnel: Funnel  # ingestion outcomes and applied pending records are counted here
    # the batch jobs on the analytics engine (None: ``[dmp.analytics] engine = "off"``); it
    # opens the engine per job, under a lease, never for the process's lifetime
    analytics: EngineRuns | None = None
    funnel_log: FunnelLog | None = None  # a CLI run's (``open_core``); a server worker has its own
    # whether online writes mark the browsers they change: only the engine reads the marks
    marks: ChangeMarks = NOT_MARKING

    async def recompute(self) -> RecomputeReport:
        """Every segment recomputed: on the analytics engine, else per profile."""
        if self.analytics is None:
            return await self.segments.recompute()
        return await self.analytics.recompute(list(self.segments.segments.values()))

    def replace(self, dmp: DmpConfig) -> None:
        """Serve the segments, destinations and partners ``dmp`` holds now (changed through
        the admin API)."""
        segment_ids = [s.id for s in dmp.segments]
        self.segments.replace([s.to_model() for s in dmp.segments])
        self.exports.replace(segment_ids, [d.to_model() for d in dmp.destinations])
        self.subjects.replace_partners(p.id for p in dmp.partners)


def trait_staging(dmp: DmpConfig) -> TraitStaging | None:
    """Where online trait writes are staged for the engine, which owns the profiles' traits
    (None: no engine; they are written to the key-value store)."""
    settings = dmp.analytics.to_model()
    if settings is None:
        return None
    return TraitStaging(settings.staging_directory, on_set_aside=staged_set_aside)


def engine_opener(dmp: DmpConfig) -> OpenEngine | None:
    """What opens the configured analytics engine (None: it is off). Opening is left to the
    job that needs it (``EngineRuns``): DuckDB allows one writing process per file."""
    settings = dmp.analytics.to_model()
    if settings is None:
        return None
    max_events = dmp.trait_catalog().max_events_per_name

    def open_engine() -> AnalyticsEngine:
        return open_configured_engine(settings, max_events_per_name=max_events)

    return open_engine


def build_core(
    dmp: DmpConfig,
    store: Store,
    *,
    clock: Clock = time.time,
    funnel: Funnel | None = None,
    holder: str | None = None,
) -> DmpCore:
    """Every shared DMP object over ``store``, each built once (``funnel``: the worker's;
    ``holder``: the process's name on the engine's lease)."""
    funnel = Funnel() if funnel is None else funnel
    catalog = dmp.trait_catalog()
    open_engine = engine_opener(dmp)
    marks = NOT_MARKING if open_engine is None else MARKING
    matches = MatchTable(store, dmp.match_ttl_days * SECONDS_PER_DAY, marks)
    reader = ProfileReader(store, max_events_per_name=catalog.max_events_per_name, clock=clock)
    memberships = Memberships(store, dmp.membership_ttl())
    segments = SegmentService(
        store,
        [s.to_model() for s in dmp.segments],
        StoredProfiles(store, reader.build, ProfileReader.SUFFIXES),
        memberships=memberships,
        clock=clock,
        counted_overlap=open_engine is not None,
    )
    analytics = None
    staging = trait_staging(dmp)
    if open_engine is not None:
        analytics = EngineRuns(
            open_engine, store, memberships, catalog, holder=holder or worker_name(),
            clock=clock, staging=staging,
        )  # fmt: skip
    exports = SegmentExports(
        store, [s.id for s in dmp.segments], [d.to_model() for d in dmp.destinations],
        state_ttl=dmp.export_state_ttl(), clock=clock, engine=analytics,
    )  # fmt: skip
    # without an engine, a profile written by ingestion is re-evaluated against the segments
    # at once; with one, its traits are staged for the engine, whose recompute evaluates them
    traits = TraitStore(
        store, catalog, clock=clock, marks=marks, staging=staging,
        on_profile_changed=[segments.profiles_changed] if analytics is None else [],
    )  # fmt: skip
    ingestor = build_ingestor(
        store, traits, pending_ttl=dmp.ingest.pending_ttl_days * SECONDS_PER_DAY, clock=clock,
        funnel=funnel,
    )  # fmt: skip
    subjects = DmpSubjects(
        store, matches, exports, [p.id for p in dmp.partners], clock=clock, marks=marks,
        staging=staging, engine_traits=None if analytics is None else analytics.traits,
    )  # fmt: skip
    return DmpCore(
        store, matches, reader, segments, exports, traits, ingestor, subjects, funnel, analytics,
        marks=marks,
    )  # fmt: skip


def trait_source(core: DmpCore) -> TraitSource:
    """Where the profile look-up reads traits: the engine when it owns them, else the store."""
    if core.analytics is None:
        return core.profile_reader
    return EngineTraits(core.analytics)


def subject_data(config: Config, store: Store) -> SubjectData:
    """The DMP's access and erasure of one browser over ``store`` (``roots/subjects.py``)."""
    return build_core(dmp_table(config), store).subjects


@contextlib.asynccontextmanager
async def open_core(
    config: Config, *, durability: Durability | None = None
) -> AsyncIterator[DmpCore]:
    """The core over the configured store, closed (pending writes flushed) when the block
    ends; a queued write the store did not take then fails the block (``StorageError``)."""
    dmp = dmp_table(config)
    store = await connect_store(config.store.url, durability=durability or config.store.durability)
    try:
        core = build_core(dmp, store)
        # what this run ingests, in the funnel beside the server workers' counts
        worker = worker_name()
        funnel_log = FunnelLog(store, worker, core.funnel)
        try:
            yield dataclasses.replace(core, funnel_log=funnel_log)
        except BaseException:
            with contextlib.suppress(Exception):  # the run's own error is the one to raise
                await _settle_funnel(funnel_log, store, worker)
            raise
        await _settle_funnel(funnel_log, store, worker)
    finally:
        await store.close()
    if store.lost:
        raise StorageError(
            f"{store.lost:,} queued writes were not stored (see the log above); "
            "ingesting again is idempotent"
        )


async def _settle_funnel(funnel_log: FunnelLog, store: Store, worker: str) -> None:
    """A run's counts written (a partly applied run's too); the keys of processes gone rolled
    up (a failed roll-up is only logged: the next one does it)."""
    await funnel_log.flush()
    try:
        await roll_up(store, worker)
    except StorageError as exc:
        log.warning("rolling up the funnel failed: %s", exc)


def new_dmp_uid() -> str:
    return format_browser_id(os.urandom(16))


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class DmpServer(RoleServer):
    """One DMP server worker: ``app`` is built now (partners and clients compiled, so a bad
    template fails the start); the store is opened and the routes bound in its startup hook,
    after the server forked; everything is closed in its shutdown hook."""

    role = "dmp"

    def __init__(self, config: Config) -> None:
        self.dmp = dmp_table(config)
        super().__init__(config, deadlines=StoreDeadlines.of(self.dmp))
        self.partners = self.dmp.partner_models()
        self.clients = self.dmp.client_models()
        self.core: DmpCore | None = None
        self.service: DmpService | None = None
        self.definitions: DmpDefinitions | None = None
        self.schedules: ScheduleSet | None = None
        self.transport: PartnerTransport | None = None

    async def build(self, store: Store) -> None:
        dmp, app = self.dmp, self.app
        funnel = Funnel(funnel_counts())  # the worker's one funnel, added up by /metrics
        worker = worker_name()
        # batches: recompute, ...
        core = self.core = build_core(dmp, store, funnel=funnel, holder=worker)
        browsers = build_core(dmp, self.requests, funnel=funnel)  # behind the deadlines
        admin_core = build_core(dmp, self.admin, funnel=funnel)
        subjects = admin_core.subjects
        service = self.service = DmpService(
            self.requests,
            dmp.settings(),
            self.partners,
            self.clients,
            matches=browsers.matches,
            traits=browsers.traits,
            profile_reader=trait_source(admin_core),  # the admin API's look-up alone reads them
            memberships=browsers.segments.memberships,
            policy=self.policy,
            export_vendors=core.exports.vendors(),  # marked on profiles for the exports
            waiting=browsers.ingestor.pending,  # records that waited for this sync
            clock=time.time,
            new_uid=new_dmp_uid,
            worker=worker,
            funnel=funnel,
            marks=browsers.marks,
        )
        ingest = build_ingest_api(store, dmp, core.ingestor)

        def serve(view: DmpConfig) -> None:
            """What the request paths read, rebuilt when the definitions changed."""
            service.replace_partners(view.partner_models())
            for each in (core, browsers, admin_core):
                each.replace(view)
            service.export_vendors = tuple(core.exports.vendors())
            ingest.tokens = {p.id: p.ingest_token for p in view.partners}

        definitions = self.definitions = DmpDefinitions(self.admin, dmp, on_change=[serve])
        await definitions.refresh()  # changes stored before this start, served from the first
        transport = self.transport = PartnerTransport()
        jobs = DmpJobs(
            definitions, store, segments=core.segments, exports=core.exports,
            ingestor=core.ingestor, transport=transport, exports_transport=transport,
            recompute_run=None if core.analytics is None else core.recompute,
        )  # fmt: skip
        schedules = self.schedules = ScheduleSet(jobs.jobs, self.admin, holder=worker)

        def recompute() -> Schedule | None:
            return schedules.get(RECOMPUTE_JOB) if jobs.recompute() is not None else None

        def rule(segment_id: str) -> object:
            return definitions.entry("segments", segment_id).rule  # type: ignore[union-attr]

        routes = DmpRoutes(service, dmp.cookie_spec())
        app.route("/tag.js", routes.tag_js, on_error=TEXT_ON_ERROR)
        app.route("/sync", routes.sync, methods=("GET", "OPTIONS"), on_error=SYNC_ON_ERROR)
        direct = DirectCallback(service, dmp.cookie_spec())
        app.route("/callback/", routes.callback, prefix=True, direct=direct)
        app.route("/inband/", routes.inband, prefix=True)
        app.route("/imp", routes.imp)
        app.route("/audiences", routes.audiences, on_error=TEXT_ON_ERROR)
        page = OptOutPage(f"DMP {parse_url(dmp.base_url()).authority}", secure=dmp.cookie_secure)
        # the page's access report reads the key-value store alone, never the analytics engine
        optout = OptOutFlow(
            page, DmpOptOutCookie(dmp.cookie_spec(), new_dmp_uid), StoredSubjects(subjects)
        )
        app.route(page.path, optout.handle, methods=("GET", "POST"), read_body=True,
                  on_error=OPTOUT_ON_ERROR)  # fmt: skip
        console_routes, series = build_console(
            self.role,
            dmp.admin_token,
            self.config.console,
            self.admin,
            console_dmp.selections(admin_core.segments),
            console_dmp.dmp_pages(service, admin_core.segments, admin_core.exports, self.admin),
        )
        admin_routes = [
            *console_routes,
            *self.metrics_routes(dmp.admin_token),
            *DmpAdmin(service, self.admin).routes(),
            *DefinitionAdmin(definitions).routes(),
            *SegmentAdmin(core.segments, core.exports, recompute, rule).routes(),
            *ScheduleAdmin(jobs, schedules).routes(),
            *ingest.routes(),
            *subject_routes(subjects),
        ]
        token = dmp.admin_token
        described = with_openapi(
            "cookiematch DMP API", DESCRIPTION, admin_routes, operations(dmp.ingest),
            tokens={INGEST_TOKEN: INGEST_TOKEN_DESCRIPTION}, prefixes=PREFIXES,
        )  # fmt: skip
        app.fallback = guarded_app(described, token if token is not None else "")
        self.every(FUNNEL_FLUSH_SECONDS, self._funnel_step(service, store, worker),
                   "flushing the funnel counters failed; retrying")  # fmt: skip
        self.every(  # partners, segments and destinations changed through other workers
            DEFINITIONS_REFRESH_SECONDS,
            definitions.refresh,
            "refreshing the DMP definitions failed; keeping the last view",
        )
        self.every(series.poll_seconds, series.tick, SERIES_FAILED)
        self.run(schedules.run())  # stopped first: a run is cancelled, its lease freed

    @staticmethod
    def _funnel_step(
        service: DmpService, store: Store, worker: str
    ) -> Callable[[], Awaitable[None]]:
        """Write the worker's funnel; roll up the keys of processes gone every
        ``FUNNEL_ROLLUP_SECONDS`` (one worker at a time: ``dmp/funnel_log.py``)."""
        rolled = time.monotonic()

        async def step() -> None:
            nonlocal rolled
            await service.funnel_log.flush()
            if time.monotonic() - rolled >= FUNNEL_ROLLUP_SECONDS:
                rolled = time.monotonic()
                await roll_up(store, worker)

        return step

    async def close(self) -> None:
        if self.service is not None:
            with contextlib.suppress(Exception):
                await self.service.funnel_log.flush()
        if self.transport is not None:
            await self.transport.aclose()


def app() -> App:
    """granian's factory for a DMP worker."""
    return DmpServer(config_from_env()).app
