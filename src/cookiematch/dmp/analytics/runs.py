"""The batch jobs on the analytics engine, each with the engine open for it alone.

DuckDB lets one process write a database file. So no server worker holds the engine open:
a job opens it when it runs and closes it when it ends, under one lease for every engine job
of every worker and CLI command on the store (``keys.ANALYTICS_LEASE_KEY``). The scheduled
recompute already runs in one worker at a time (``dmp/schedule.py``); the engine's lease also
keeps apart two different jobs (a recompute and a CLI migration) and two hosts. A job that
finds the lease held fails with ``Busy``; a schedule tries again at its next tick.

    recompute   refresh the engine's profiles: apply the staged trait updates, then re-read
                the online parts changed since its last run (``refresh.py``), evaluate
                every segment in SQL, write the membership diff to the key-value store
                (``recompute.py``), keep the report where the per-profile recompute keeps it
                (``{dmps}:recompute``)
    migrate     load every profile of the key-value store into the engine, then recompute
    export      refresh the engine's profiles, then read a destination's delta from it
                (``dmp/segment_exports.py``); it waits for a running job (``EXPORT_WAIT``)
    ingest      refresh the engine's profiles, then ingest a partner's files in SQL
                (``ingest_sql.py``; DuckDB)
    traits      refresh the engine's profiles, then read one browser's traits (the admin
                API's profile look-up); it waits for a running job (``LOOKUP_WAIT``)

A recompute also counts every segment pair's overlap in SQL and keeps it in the key-value store
(``keys.OVERLAP_KEY``), where the admin API, the console and ``dmp overlap`` read it
(``SegmentService.overlap``): no server worker opens the engine to answer a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import msgspec

from cookiematch.clock import Clock
from cookiematch.dmp import keys
from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.engine import AnalyticsEngine
from cookiematch.dmp.analytics.ingest_sql import ingest_files
from cookiematch.dmp.analytics.load import LoadContext, load_profiles
from cookiematch.dmp.analytics.recompute import recompute
from cookiematch.dmp.analytics.refresh import LOADED_THROUGH, Refresh, refresh
from cookiematch.dmp.analytics.rows import ProfileRows
from cookiematch.dmp.analytics.settings import MEMORY_LIMIT_MB
from cookiematch.dmp.ingest.pending import PendingRecords
from cookiematch.dmp.ingest.pipeline import IngestReport
from cookiematch.dmp.ingest.readers import Format, Progress
from cookiematch.dmp.overlap import CountedAudiences
from cookiematch.dmp.segments.membership import Memberships
from cookiematch.dmp.segments.model import Segment
from cookiematch.dmp.segments.updater import RecomputeReport
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.dmp.traits.staging import TraitStaging
from cookiematch.errors import Busy, ConfigError, LeaseLost
from cookiematch.storage.base import Store
from cookiematch.storage.lease import Lease, holder_of

__all__ = ["LEASE_SECONDS", "LOOKUP_WAIT", "EngineRuns"]

log = logging.getLogger(__name__)

LEASE_SECONDS = 300.0
"""The engine lease's TTL: a process that dies holding it blocks the others this long."""

LOOKUP_WAIT = 2.0
"""Seconds the profile look-up waits for a running job before answering that the engine is
busy."""

WAIT_POLL = 0.5
"""Seconds between two tries of a job that waits for the lease (``engine(wait=...)``)."""

OpenEngine = Callable[[], AnalyticsEngine]


class EngineRuns:
    """The engine's jobs over ``store``; ``open_engine`` opens the configured engine."""

    def __init__(
        self,
        open_engine: OpenEngine,
        store: Store,
        memberships: Memberships,
        catalog: TraitCatalog,
        *,
        holder: str,
        clock: Clock = time.time,
        lease_ttl: float = LEASE_SECONDS,
        staging: TraitStaging | None = None,
    ) -> None:
        self._open = open_engine
        self.staging = staging
        self._store = store
        self.memberships = memberships
        self._catalog = catalog
        self.holder = holder
        self._clock = clock
        self._lease_ttl = lease_ttl

    def context(self, now: float) -> LoadContext:
        return LoadContext(now, self._catalog, self.memberships.ttl)

    @contextlib.asynccontextmanager
    async def engine(self, wait: float = 0.0) -> AsyncIterator[AnalyticsEngine]:
        """The engine, open for this block alone; ``Busy`` if another process still has it
        after ``wait`` seconds (tried again every ``WAIT_POLL``)."""
        lease = Lease(
            self._store, keys.ANALYTICS_LEASE_KEY, self.holder, ttl=self._lease_ttl,
            clock=self._clock,
        )  # fmt: skip
        deadline = time.monotonic() + wait
        while not (claimed := await lease.claim()) and time.monotonic() < deadline:
            await asyncio.sleep(min(WAIT_POLL, max(0.0, deadline - time.monotonic())))
        if not claimed:
            holder = await holder_of(self._store, keys.ANALYTICS_LEASE_KEY)
            raise Busy(f"the analytics engine is in use by {holder or 'another process'}")
        renewing = asyncio.create_task(_renew(lease))
        try:
            engine = await asyncio.to_thread(self._open)
            try:
                yield engine
            finally:
                await asyncio.to_thread(engine.close)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await lease.release()

    @property
    def catalog(self) -> TraitCatalog:
        return self._catalog

    async def refresh(self, engine: AnalyticsEngine, now: float) -> Refresh:
        """The staged trait updates applied, the online parts changed re-read
        (``refresh.py``)."""
        return await refresh(self._store, engine, self.context(now), self.staging)

    async def traits(self, dmp_uid: str) -> ProfileRows | None:
        """What the engine holds of one browser once refreshed (None: nothing); ``Busy`` if
        another job keeps the engine longer than ``LOOKUP_WAIT``."""
        async with self.engine(wait=LOOKUP_WAIT) as engine:
            await self.refresh(engine, self._clock())
            found = await asyncio.to_thread(engine.profiles, [dmp_uid])
        return found[0] if found else None

    async def ingest(
        self,
        partner_id: str,
        files: Sequence[Path],
        pending: PendingRecords,
        *,
        fmt: Format | None = None,
        progress: Progress | None = None,
        memory_limit_mb: int = MEMORY_LIMIT_MB,
        keep_rejects: bool = True,
    ) -> IngestReport:
        """Ingest a partner's files into the engine's profiles in SQL (``ingest_sql.py``),
        once it is refreshed (the staged updates first: the files come after them)."""
        async with self.engine() as engine:
            if not isinstance(engine, DuckDBEngine):
                raise ConfigError("ingestion in SQL runs on DuckDB ([dmp.analytics] engine)")
            await self.refresh(engine, self._clock())
            return await ingest_files(
                engine.connection, self._store, pending, partner_id, files, self._catalog,
                fmt=fmt, progress=progress, clock=self._clock, keep_rejects=keep_rejects,
                memory_limit_mb=memory_limit_mb,
            )  # fmt: skip

    async def recompute(self, segments: Sequence[Segment]) -> RecomputeReport:
        """Refresh the engine's profiles, recompute ``segments``, write the diff."""
        async with self.engine() as engine:
            return await self._recompute(engine, segments)

    async def migrate(self, segments: Sequence[Segment]) -> tuple[int, RecomputeReport]:
        """Move every profile of the store into the engine (replacing what it held of them;
        ``load.load_profiles``), then recompute ``segments``; return how many profiles were
        loaded and the recompute's report."""
        async with self.engine() as engine:
            now = self._clock()
            loaded = await load_profiles(self._store, engine, self.context(now), keep=True)
            await asyncio.to_thread(engine.set_checkpoint, LOADED_THROUGH, now)
            return loaded, await self._recompute(engine, segments)

    async def _recompute(
        self, engine: AnalyticsEngine, segments: Sequence[Segment]
    ) -> RecomputeReport:
        started = time.perf_counter()
        now = self._clock()
        await self.refresh(engine, now)
        report = await recompute(engine, segments, self.memberships, now)
        pairs = await asyncio.to_thread(engine.overlap, [s.id for s in segments], now)
        counted = CountedAudiences.of(report.sizes, pairs, report.profiles)
        report = msgspec.structs.replace(report, seconds=round(time.perf_counter() - started, 3))
        await self._store.set(keys.OVERLAP_KEY, msgspec.json.encode(counted))
        await self._store.set(keys.RECOMPUTE_KEY, msgspec.json.encode(report))
        return report


async def _renew(lease: Lease) -> None:
    """Renew ``lease`` while the engine is open. Should a renewal fail, another process may
    claim the lease once it lapses; DuckDB's own lock on the file then refuses it the file."""
    while True:
        await asyncio.sleep(lease.renew_every)
        try:
            await lease.renew()
        except LeaseLost as exc:
            log.warning("the analytics engine's lease: %s", exc)
            return
