"""The DMP's API contract: the answers' types (the handlers build their answers with them)
and the registry of its operations, from which ``web/openapi.py`` writes the OpenAPI
document. It holds the admin API (``/admin/v1``, the admin token) and the partners' batch
ingestion API (``/api/v1``, each partner's ``ingest_token``: ``web/dmp/ingest.py``), both
served on the DMP's listener: the one contract an integrator reads."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from cookiematch.config.dmp import DmpIngestConfig, DmpPartnerConfig
from cookiematch.config.dmp_segments import DmpDestinationConfig, DmpSegmentConfig
from cookiematch.dmp.exports.report import DeliveryReport
from cookiematch.dmp.funnel import FunnelReport
from cookiematch.dmp.ingest.records import RawRecord
from cookiematch.dmp.profiles import Profile
from cookiematch.dmp.schedule import RunRecord, ScheduleState
from cookiematch.dmp.segments.updater import RecomputeReport
from cookiematch.formats import Id
from cookiematch.privacy.subjects import ErasureReport, SubjectReport
from cookiematch.web.admin import PREFIX
from cookiematch.web.dmp import ingest
from cookiematch.web.openapi import (
    COMMON,
    NO_BODY,
    Header,
    Operation,
    Query,
    links,
    path_types,
)

__all__ = [
    "DESCRIPTION",
    "INGEST_TOKEN",
    "INGEST_TOKEN_DESCRIPTION",
    "OPERATIONS",
    "PREFIXES",
    "Destinations",
    "ErrorBound",
    "Exports",
    "JobState",
    "Overlap",
    "OverlapPair",
    "Partners",
    "Pulls",
    "RunStarted",
    "SegmentDetail",
    "SegmentSummary",
    "Segments",
    "operations",
]

DESCRIPTION = (
    "The admin API (/admin/v1, the admin token): profiles, the sync funnel, partners, segments "
    "and destinations (changed without a restart), segment sizes and overlap, scheduled pulls "
    "and exports, and the access and erasure of a user's data. The partners' batch ingestion "
    "API (/api/v1, each partner's ingest token). Both on the DMP's listener."
)
PREFIXES = (PREFIX, ingest.PREFIX)
"""The paths the document covers: every route under them has its operation."""
INGEST_TOKEN = "ingest_token"
INGEST_TOKEN_DESCRIPTION = (
    "a partner's ingest_token ([[dmp.partners]]): only the ingestion of that partner's records"
)


class Partners(msgspec.Struct, frozen=True):
    partners: list[DmpPartnerConfig]


class Destinations(msgspec.Struct, frozen=True):
    destinations: list[DmpDestinationConfig]


class SegmentSummary(msgspec.Struct, frozen=True):
    id: str
    description: str
    size: int


class Segments(msgspec.Struct, frozen=True, kw_only=True):
    """The segments with their sizes (as the last recompute counted them), the last
    recompute, and its schedule (null: none)."""

    segments: list[SegmentSummary]
    last_recompute: RecomputeReport | None
    recompute_schedule: ScheduleState | None


class SegmentDetail(msgspec.Struct, frozen=True, kw_only=True):
    """A segment: its rule as written, its size (as the last recompute counted it), and its
    last export to each destination."""

    id: str
    description: str
    rule: dict[str, Any] | None  # as written (docs/dmp-data.md); its grammar is not typed
    size: int
    exports: dict[str, DeliveryReport]


class Estimate(msgspec.Struct, frozen=True):
    estimate: float
    low: float
    high: float


class OverlapPair(msgspec.Struct, frozen=True, kw_only=True):
    """Two audiences: their sizes, overlap and union (estimates with bounds), Jaccard index
    and affinity."""

    a: str
    b: str
    size_a: Estimate
    size_b: Estimate
    overlap: Estimate
    union: Estimate
    jaccard: float
    affinity: float


class ErrorBound(msgspec.Struct, frozen=True):
    relative: float
    std_devs: float


class Overlap(msgspec.Struct, frozen=True, kw_only=True):
    mode: Literal["sketch", "exact"]
    population: int
    error_bound: ErrorBound | None  # null: exact
    pairs: list[OverlapPair]


class JobState(msgspec.Struct, frozen=True, kw_only=True):
    """A scheduled job: ``next_at`` null when it runs only when asked, ``holder`` the worker
    running it now, ``last_run`` its last run's record (null: none)."""

    job: str
    interval_seconds: float
    next_at: float | None
    holder: str | None
    last_run: RunRecord | None


class Pulls(msgspec.Struct, frozen=True):
    pulls: list[JobState]


class Exports(msgspec.Struct, frozen=True):
    exports: list[JobState]


class RunStarted(msgspec.Struct, frozen=True):
    """A run asked for: started in the background; ``report`` is where its state is read."""

    job: str
    status: Literal["started"]
    report: str


Mode = Literal["sketch", "exact"]
SUBJECT = f"{PREFIX}/subjects/{{subject}}"
PULL = f"{PREFIX}/pulls/{{partner}}"
EXPORT = f"{PREFIX}/exports/{{segment}}/{{destination}}"


def _entries(kind: str, one: str, entry: object, listing: object | None) -> tuple[Operation, ...]:
    path = f"{PREFIX}/{kind}/{{ident}}"
    found = [
        Operation(
            "PUT",
            path,
            f"Create or replace a {one}",
            {200: entry, 201: entry},
            body=entry,
            description=f"The keys of a [[dmp.{kind}]] entry; id may be left out (the "
            "path's). A secret sent back as the mask keeps the stored one.",
        ),
        Operation("DELETE", path, f"Delete a {one}", {204: NO_BODY}, problems=(404, 409)),
    ]
    if listing is not None:
        found += [
            Operation(
                "GET",
                f"{PREFIX}/{kind}",
                f"Every {one}",
                {200: listing},
                links=links(
                    200,
                    {name: f"$response.body#/{kind}/0/id" for name in ("ident", "partner")},
                    f"GET {path}",
                    f"DELETE {path}",
                    *((f"GET {PULL}", f"POST {PULL}/run") if kind == "partners" else ()),
                ),
            ),
            Operation("GET", path, f"One {one}", {200: entry}, problems=(404,)),
        ]
    return tuple(found)


ADMIN_OPERATIONS: tuple[Operation, ...] = path_types(
    {name: Id for name in ("ident", "segment_id", "partner", "segment", "destination")},
    *COMMON,
    Operation(
        "GET",
        f"{PREFIX}/profiles/{{dmp_uid}}",
        "A profile (503, with Retry-After, while the analytics engine, which holds its traits, "
        "is busy)",
        {200: Profile},
        problems=(404, 503),
    ),
    Operation(
        "GET",
        f"{PREFIX}/profiles",
        "The profile a partner's uid is matched to",
        {200: Profile},
        query=(
            Query("partner", str, "the partner's id", required=True),
            Query("uid", str, "the partner's uid", required=True),
        ),
        problems=(404, 422, 503),
    ),
    Operation(
        "GET", f"{PREFIX}/funnel", "The sync funnel per partner and client", {200: FunnelReport}
    ),
    *_entries("partners", "partner", DmpPartnerConfig, Partners),
    *_entries("destinations", "destination", DmpDestinationConfig, Destinations),
    *_entries("segments", "segment", DmpSegmentConfig, None),
    Operation(
        "GET",
        f"{PREFIX}/segments",
        "The segments and their sizes",
        {200: Segments},
        links=links(
            200,
            {name: "$response.body#/segments/0/id" for name in ("ident", "segment_id")},
            f"GET {PREFIX}/segments/{{segment_id}}",
            f"DELETE {PREFIX}/segments/{{ident}}",
        ),
    ),
    Operation(
        "GET",
        f"{PREFIX}/segments/{{segment_id}}",
        "A segment",
        {200: SegmentDetail},
        problems=(404,),
    ),
    Operation(
        "GET",
        f"{PREFIX}/overlap",
        "Audiences' overlap and affinity",
        {200: Overlap},
        query=(
            Query(
                "audience",
                str,
                "segment:<id>, imp:<campaign>, click:<campaign> or conv:<campaign>; one: its "
                "affinity to every other; several: every pair",
                required=True,
                repeated=True,
            ),
            Query("mode", Mode, "sketch (default: the last recompute's sketches) or exact"),
        ),
        problems=(404, 422),
    ),
    Operation("GET", f"{PREFIX}/pulls", "The partners' scheduled pulls", {200: Pulls}),
    Operation("GET", PULL, "A partner's pull", {200: JobState}, problems=(404,)),
    Operation(
        "POST", f"{PULL}/run", "Run a partner's pull now", {202: RunStarted}, problems=(404, 409)
    ),
    Operation("GET", f"{PREFIX}/exports", "The scheduled exports", {200: Exports}),
    Operation(
        "GET", EXPORT, "A segment's export to a destination", {200: JobState}, problems=(404,)
    ),
    Operation(
        "POST",
        f"{EXPORT}/run",
        "Export a segment to a destination now",
        {202: RunStarted},
        problems=(404, 409),
    ),
    Operation(
        "GET",
        SUBJECT,
        "Everything stored about a DMP uid (GDPR art. 15)",
        {200: SubjectReport},
        problems=(400,),
    ),
    Operation(
        "DELETE",
        SUBJECT,
        "Erase a DMP uid (GDPR art. 17)",
        {200: ErasureReport},
        problems=(400,),
    ),
)

IdempotencyKey = Annotated[
    str, msgspec.Meta(extra_json_schema={"pattern": f"^{ingest.IDEMPOTENCY_KEY.pattern}$"})
]
Replayed = Literal["true"]


def _ingestion(limits: DmpIngestConfig) -> Operation:
    """``POST /api/v1/partners/{partner}/records`` under ``limits``."""
    most = limits.max_batch_records
    records = Annotated[list[RawRecord], msgspec.Meta(extra_json_schema={"maxItems": most})]
    return Operation(
        "POST",
        ingest.PATH,
        "Ingest a batch of a partner's records",
        {200: ingest.BatchAnswer},
        body=records | ingest.Envelope[RawRecord],
        media=dict.fromkeys(ingest.LINES_TYPES, str),
        headers=(
            Header(
                "Idempotency-Key",
                IdempotencyKey,
                "a replay with the same key and body answers the first answer again and "
                "applies nothing; with another body: 422",
            ),
        ),
        replies=(Header(ingest.REPLAYED, Replayed, "this answer is a replay"),),
        token=INGEST_TOKEN,
        problems=(404,),
        path_params={"partner": Id},
        description='A JSON array of records, the same in an object under "records", or '
        f"one record per line ({', '.join(ingest.LINES_TYPES)}); at most {most} records and "
        f"{limits.max_batch_bytes} bytes (413). A record that breaks a rule (its schema, a "
        "declared trait's type, an event more than a day ahead) is refused alone, listed in "
        "rejects with its 0-based index; the batch goes on. 403: the partner has no "
        "ingest_token (HTTP ingestion off); 404: no such partner. Written under the store's "
        "configured durability before the answer (docs/dmp-data.md).",
    )


def operations(limits: DmpIngestConfig) -> tuple[Operation, ...]:
    """The DMP's operations, the ingestion API's under ``limits`` (``[dmp.ingest]``)."""
    return (*ADMIN_OPERATIONS, _ingestion(limits))


OPERATIONS = operations(DmpIngestConfig())
"""The DMP's operations under the default ``[dmp.ingest]`` limits."""
