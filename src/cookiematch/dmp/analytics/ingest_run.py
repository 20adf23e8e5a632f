"""One run of ``ingest_sql.ingest_files`` on the configured engine: opened for the run (DuckDB
lets one process write a file at a time), checkpointed and closed after, the rejects handed
over in file order."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cookiematch.clock import Clock
from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.ingest_sql import ingest_files
from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.ingest.pending import PendingRecords
from cookiematch.dmp.ingest.pipeline import IngestReport
from cookiematch.dmp.ingest.readers import Format, Progress
from cookiematch.dmp.ingest.rejects import Reject
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.storage.base import Store


async def ingest_into_engine(
    settings: AnalyticsSettings,
    store: Store,
    pending: PendingRecords,
    partner_id: str,
    paths: Sequence[Path],
    catalog: TraitCatalog,
    *,
    fmt: Format | None = None,
    progress: Progress | None = None,
    on_reject: Callable[[Reject], None] | None = None,
    clock: Clock = time.time,
) -> IngestReport:
    """Ingest ``paths`` of ``partner_id`` into the engine ``settings`` name; the sync map
    read from ``store``, unsynced records parked in ``pending``; each refused line to
    ``on_reject``."""
    engine = DuckDBEngine(settings, max_events_per_name=catalog.max_events_per_name)
    try:
        report = await ingest_files(
            engine.connection,
            store,
            pending,
            partner_id,
            paths,
            catalog,
            fmt=fmt,
            progress=progress,
            clock=clock,
            keep_rejects=True,
        )
        engine.connection.execute("CHECKPOINT")
    finally:
        engine.close()
    rejects, report.rejects = report.rejects, []
    if on_reject is not None:
        for refusal in rejects:
            on_reject(refusal)
    return report
