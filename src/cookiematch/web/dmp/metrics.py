"""The DMP's counters at ``/metrics`` (added up over the server's workers: ``web/counters.py``):
the funnel as it is counted (docs/dmp.md): the sync funnel, the records ingested server to
server by outcome and their rejects by reason, and the attribute values delivered by each path
(in-band, S2S), and those that reached the DMP but could not be stored; and the staged trait
files the analytics engine's job set aside."""

from __future__ import annotations

from cookiematch.dmp.funnel import FunnelKey
from cookiematch.web.counters import LabelledCounter, LabelledGauge, Labels, WorkerCounts

__all__ = [
    "DELIVERED_VALUES",
    "FAILED_VALUES",
    "INGESTED_RECORDS",
    "INGEST_REJECTS",
    "STAGED_SET_ASIDE",
    "SYNC_FUNNEL",
    "funnel_counts",
    "staged_set_aside",
]

SYNC_FUNNEL = LabelledCounter(
    "cookiematch_dmp_sync_funnel",
    "The sync funnel by scope (partner, client, other), partner or client id and stage"
    " (tag_js, tags_loaded, pixels, callbacks, callback_failed, rejected, inband, inband_refused,"
    " inband_failed, initiated, initiated_stored, cookie_refused, ...)",
    ("scope", "id", "stage"),
)
INGESTED_RECORDS = LabelledCounter(
    "cookiematch_dmp_ingested_records",
    "Records ingested server to server (HTTP API, pulls) and pending records applied, by"
    " partner and outcome (records, accepted, pending, resolved, rejected, expired)",
    ("partner", "outcome"),
)
INGEST_REJECTS = LabelledCounter(
    "cookiematch_dmp_ingest_rejects",
    "Records ingested server to server that were rejected, by partner and reason (consent,"
    " uid, not_json, too_large, attribute, event, remove, malformed)",
    ("partner", "reason"),
)
DELIVERED_VALUES = LabelledCounter(
    "cookiematch_dmp_delivered_values",
    "Partner attribute values applied to profiles, by partner and path (inband: key-values of"
    " stored in-band redirects; s2s: attributes of accepted and resolved records)",
    ("partner", "path"),
)
FAILED_VALUES = LabelledCounter(
    "cookiematch_dmp_failed_values",
    "Partner attribute values that reached the DMP but whose store call failed or passed its"
    " deadline, by partner and path (inband: key-values of in-band redirects answered with the"
    " pixel all the same)",
    ("partner", "path"),
)

STAGED_SET_ASIDE = LabelledGauge(
    "cookiematch_dmp_staged_files_set_aside",
    "Staged trait files that did not decode, set aside in the staging directory's bad/ for an"
    " operator, as the engine job of a live worker last counted them",
    (),
    mode="latest",
)


def staged_set_aside(count: int) -> None:
    """``TraitStaging``'s ``on_set_aside``."""
    STAGED_SET_ASIDE.set((), count)


def _route(key: FunnelKey) -> tuple[LabelledCounter, Labels]:
    scope, name, counter = key
    if scope == "ingest":
        if counter == "values":
            return DELIVERED_VALUES, (name, "s2s")
        return INGESTED_RECORDS, (name, counter)
    if scope == "reject":
        return INGEST_REJECTS, (name, counter)
    if scope == "partner" and counter == "inband_values":
        return DELIVERED_VALUES, (name, "inband")
    if scope == "partner" and counter == "inband_failed_values":
        return FAILED_VALUES, (name, "inband")
    return SYNC_FUNNEL, key


def funnel_counts() -> WorkerCounts[FunnelKey]:
    """The ``Funnel``'s counts, each written to its family (``_route``)."""
    return WorkerCounts(_route)
