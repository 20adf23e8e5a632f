"""The DMP's counters at ``/metrics`` (added up over the server's workers: ``web/counters.py``):
the sync funnel as it is counted (docs/dmp.md) and the records the ingestion API took."""

from __future__ import annotations

from cookiematch.dmp.funnel import FunnelKey
from cookiematch.dmp.ingest import IngestReport
from cookiematch.web.counters import LabelledCounter, WorkerCounts

__all__ = ["INGESTED_RECORDS", "SYNC_FUNNEL", "count_ingested", "funnel_counts"]

SYNC_FUNNEL = LabelledCounter(
    "cookiematch_dmp_sync_funnel",
    "The sync funnel by scope (partner, client, other), partner or client id and stage"
    " (tag_js, tags_loaded, pixels, callbacks, rejected, inband, initiated, initiated_stored,"
    " cookie_refused, ...)",
    ("scope", "id", "stage"),
)
INGESTED_RECORDS = LabelledCounter(
    "cookiematch_dmp_ingested_records",
    "Records posted to the ingestion API, by partner and outcome (accepted, pending,"
    " rejected, expired)",
    ("partner", "outcome"),
)


def funnel_counts() -> WorkerCounts[FunnelKey]:
    """The ``Funnel``'s counts by (scope, id, stage), written to ``SYNC_FUNNEL``."""
    return WorkerCounts(lambda key: (SYNC_FUNNEL, key))


def count_ingested(partner: str, report: IngestReport) -> None:
    """One ``POST /api/v1/partners/<partner>/records`` batch's outcome."""
    for outcome, n in (
        ("accepted", report.accepted),
        ("pending", report.pending),
        ("rejected", report.rejected),
        ("expired", report.expired_events),
    ):
        if n:
            INGESTED_RECORDS.inc((partner, outcome), n)
