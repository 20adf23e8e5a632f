"""Wiring of the DMP role: configuration in, an ``App`` out; and its admin API.

    GET /admin/v1/health                              no authentication
    GET /admin/v1/profiles/{dmp_uid}                  {"dmp_uid", "partners", "synced_at",
                                                       "events", "inband", "attributes",
                                                       "ingested_events", ...} or 404
    GET /admin/v1/profiles?partner=<p>&uid=<uid>      the profile that partner ID is matched to
    GET /admin/v1/funnel                              the sync funnel per partner and client
    GET /admin/v1/partners                            the partners as configured (no keys)
    GET /admin/v1/segments[/{id}], /admin/v1/overlap  segments (web/dmp_segment_routes.py)
    POST /api/v1/partners/{partner}/records           partner data (web/dmp_ingest_routes.py)

The factory only reads configuration; the store is opened in the App's startup hook (in each
worker) and closed at shutdown, after the funnel counters are flushed. With segments configured,
each worker also runs the scheduled recompute (``dmp/segments/schedule.py``; a lease in the
store lets one worker at a time run it), cancelled at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time

import msgspec
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route as StarletteRoute

from cookiematch.config import Config
from cookiematch.config.dmp import DmpConfig
from cookiematch.config.dmp_segments import build_segment_exports, build_segment_service
from cookiematch.dmp.ingest import Ingestor, build_ingestor
from cookiematch.dmp.segments.schedule import RecomputeSchedule
from cookiematch.dmp.segments.service import SegmentService
from cookiematch.dmp.service import DmpService
from cookiematch.errors import NotFound, ValidationFailed
from cookiematch.protocol.cookies import CookieSpec, format_browser_id
from cookiematch.storage import Store, connect_store
from cookiematch.web.admin import HEALTH_PATH, PREFIX, guarded_app
from cookiematch.web.dmp_ingest_routes import build_ingest_api
from cookiematch.web.dmp_routes import SYNC_ON_ERROR, TEXT_ON_ERROR, DmpRoutes
from cookiematch.web.dmp_segment_routes import SegmentAdmin
from cookiematch.web.http import Request, Response
from cookiematch.web.router import App

log = logging.getLogger(__name__)

FUNNEL_FLUSH_SECONDS = 1.0


def new_dmp_uid() -> str:
    return format_browser_id(os.urandom(16))


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def _json(data: object) -> StarletteResponse:
    return StarletteResponse(msgspec.json.encode(data), media_type="application/json")


class DmpAdmin:
    """The admin endpoints over one service."""

    def __init__(self, service: DmpService) -> None:
        self.service = service

    async def health(self, request: StarletteRequest) -> StarletteResponse:
        return _json({"status": "ok"})

    async def profile(self, request: StarletteRequest) -> StarletteResponse:
        dmp_uid: str = request.path_params["dmp_uid"]
        found = await self.service.profile(dmp_uid)
        if found is None:
            raise NotFound(f"no profile {dmp_uid!r}")
        return _json(found)

    async def find_profile(self, request: StarletteRequest) -> StarletteResponse:
        partner, uid = request.query_params.get("partner"), request.query_params.get("uid")
        errors = [
            {"field": name, "message": "required"}
            for name, value in (("partner", partner), ("uid", uid))
            if not value
        ]
        if partner and partner not in self.service.partners:
            errors.append({"field": "partner", "message": f"no partner has id {partner!r}"})
        if errors or partner is None or uid is None:
            raise ValidationFailed("give ?partner=<partner id>&uid=<partner uid>", errors=errors)
        found = await self.service.profiles.find(partner, uid)
        if found is None:
            raise NotFound(f"partner {partner!r} has no match for that uid")
        return _json(found)

    async def funnel(self, request: StarletteRequest) -> StarletteResponse:
        return _json(await self.service.funnel_report())

    async def partners(self, request: StarletteRequest) -> StarletteResponse:
        listing = [
            {
                "id": p.id,
                "sync_url": p.sync.url,
                "uid_macro": p.uid_macro,
                "ttl_days": p.ttl_days,
                "priority": p.priority,
                "enabled": p.enabled,
                "id_format": p.id_format.value,
            }
            for p in self.service.partners.values()
        ]
        return _json({"partners": listing})

    def routes(self) -> list[StarletteRoute]:
        return [
            StarletteRoute(HEALTH_PATH, self.health, methods=["GET"]),
            StarletteRoute(f"{PREFIX}/profiles", self.find_profile, methods=["GET"]),
            StarletteRoute(f"{PREFIX}/profiles/{{dmp_uid}}", self.profile, methods=["GET"]),
            StarletteRoute(f"{PREFIX}/funnel", self.funnel, methods=["GET"]),
            StarletteRoute(f"{PREFIX}/partners", self.partners, methods=["GET"]),
        ]


def cookie_spec(dmp: DmpConfig) -> CookieSpec:
    return CookieSpec(
        name=dmp.cookie_name,
        max_age=dmp.cookie_max_age_days * 86400,
        secure=dmp.cookie_secure,
        domain=dmp.cookie_domain,
    )


class DmpRuntime:
    """The DMP's live objects in one worker: built at startup, closed at shutdown."""

    def __init__(self, config: Config, dmp: DmpConfig) -> None:
        self.config = config
        self.dmp = dmp
        self.partners = dmp.partner_models()  # compiled once, here
        self.clients = dmp.client_models()
        self.store: Store | None = None
        self.service: DmpService | None = None
        self.ingestor: Ingestor | None = None  # partner data: files, HTTP batches, pulls
        self.segments: SegmentService | None = None  # its profiles_changed: after ingestion
        self.schedule: RecomputeSchedule | None = None  # None: no segments, or switched off
        self.routes: DmpRoutes | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._scheduler: asyncio.Task[None] | None = None

    async def start(self, app: App) -> None:
        store = await connect_store(self.config.store.url, durability=self.config.store.durability)
        self.store = store
        worker = worker_name()
        service = DmpService(
            store,
            self.dmp.settings(),
            self.partners,
            self.clients,
            clock=time.time,
            new_uid=new_dmp_uid,
            worker=worker,
            traits=self.dmp.trait_catalog(),
        )
        self.service = service
        self.ingestor = build_ingestor(
            store, service.traits, pending_ttl=self.dmp.ingest.pending_ttl_days * 86400.0
        )
        service.on_match.append(self.ingestor.pending.resolve)  # records waiting for the sync
        self.routes = DmpRoutes(service, cookie_spec(self.dmp))
        self.segments = build_segment_service(
            self.dmp.segments,
            store,
            max_events_per_name=self.dmp.ingest.max_events_per_name,
        )
        exports = build_segment_exports(
            self.dmp.segments, self.dmp.destinations, store, match_ttl_days=self.dmp.match_ttl_days
        )
        minutes = self.dmp.recompute_interval_minutes
        if self.dmp.segments and minutes:
            self.schedule = RecomputeSchedule(
                self.segments, store, interval=minutes * 60.0, holder=worker
            )
        token = self.dmp.admin_token
        segment_admin = SegmentAdmin(self.segments, exports, self.schedule)
        admin_routes = DmpAdmin(service).routes() + segment_admin.routes()
        service.traits.on_profile_changed.append(self.segments.profiles_changed)
        admin_routes += build_ingest_api(store, self.dmp, self.ingestor).routes()
        app.fallback = guarded_app(admin_routes, token if token is not None else "")
        self._flusher = asyncio.create_task(self._flush_forever(service))
        if self.schedule is not None:
            self._scheduler = asyncio.create_task(self.schedule.run())

    async def stop(self) -> None:
        for task in (self._scheduler, self._flusher):  # a recompute is cancelled, its lease freed
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.service is not None:
            with contextlib.suppress(Exception):
                await self.service.funnel_log.flush()
        if self.store is not None:
            await self.store.close()

    async def _flush_forever(self, service: DmpService) -> None:
        while True:
            await asyncio.sleep(FUNNEL_FLUSH_SECONDS)
            try:
                await service.funnel_log.flush()
            except Exception:
                log.exception("flushing the funnel counters failed; retrying")

    def _routes(self) -> DmpRoutes:
        assert self.routes is not None, "dmp not started"
        return self.routes


def build_dmp_app(config: Config) -> App:
    """The DMP's App: the browser-facing routes, the admin API."""
    dmp = config.dmp
    if dmp is None:
        raise ValueError("the configuration has no [dmp] table")
    runtime = DmpRuntime(config, dmp)
    app = App()
    app.on_startup.append(lambda: runtime.start(app))
    app.on_shutdown.append(runtime.stop)

    async def tag_js(request: Request) -> Response:
        return await runtime._routes().tag_js(request)

    async def sync(request: Request) -> Response:
        return await runtime._routes().sync(request)

    async def callback(request: Request) -> Response:
        return await runtime._routes().callback(request)

    async def inband(request: Request) -> Response:
        return await runtime._routes().inband(request)

    async def imp(request: Request) -> Response:
        return await runtime._routes().imp(request)

    async def audiences(request: Request) -> Response:
        return await runtime._routes().audiences(request)

    app.route("/tag.js", tag_js, on_error=TEXT_ON_ERROR)
    app.route("/sync", sync, methods=("GET", "OPTIONS"), on_error=SYNC_ON_ERROR)
    app.route("/callback/", callback, prefix=True)
    app.route("/inband/", inband, prefix=True)
    app.route("/imp", imp)
    app.route("/audiences", audiences, on_error=TEXT_ON_ERROR)
    return app
