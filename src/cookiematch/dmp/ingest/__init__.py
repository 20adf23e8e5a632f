"""Server-to-server ingestion: partner records keyed by partner uids, resolved to DMP uids.

The modules, one concept each:

    records.py      one record: JSON line or CSV row, validated (RecordError: the reason)
    readers.py      files: JSON Lines / CSV / TSV, plain or gzip, paths or directories
    resolver.py     partner uid -> DMP uid through the match table (get_many in chunks)
    pending.py      records of partner uids not synced yet, applied when the sync arrives
    rejects.py      refused records as JSON Lines (source, line, reason, raw)
    idempotency.py  HTTP batch answers by Idempotency-Key
    pipeline.py     the Ingestor: batches through all of the above, merged by profile
"""

from __future__ import annotations

import time

from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.dmp.funnel import Funnel
from cookiematch.dmp.ingest.pending import PendingRecords
from cookiematch.dmp.ingest.pipeline import Ingestor, IngestReport, bulk_gc
from cookiematch.dmp.ingest.resolver import Resolver
from cookiematch.dmp.traits.writes import TraitStore
from cookiematch.storage.base import Store

__all__ = ["IngestReport", "Ingestor", "build_ingestor", "bulk_gc"]

PENDING_TTL = 30.0 * SECONDS_PER_DAY


def build_ingestor(
    store: Store,
    traits: TraitStore,
    *,
    pending_ttl: float = PENDING_TTL,
    clock: Clock = time.time,
    funnel: Funnel | None = None,
) -> Ingestor:
    """An Ingestor writing through ``traits`` (whose ``on_profile_changed`` it triggers),
    counting its outcomes, and the pending records it applies, into ``funnel``."""
    funnel = Funnel() if funnel is None else funnel
    resolver = Resolver(store)
    pending = PendingRecords(
        store, traits, resolver, ttl_seconds=pending_ttl, clock=clock, funnel=funnel
    )
    return Ingestor(store, traits, pending, resolver, clock=clock, funnel=funnel)
