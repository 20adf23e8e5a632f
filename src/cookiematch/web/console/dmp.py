"""The DMP's console pages and the series they chart.

/console/dmp         the sync funnel per partner and per client with its loss, pixel-to-
                     pixel (in-band) versus server-to-server arrival per partner,
                     ingestion outcomes and rejects (``/admin/v1/funnel``'s report); over
                     time: the funnel's stages, callbacks over pixels, values delivered by
                     path, ingestion outcomes, store health
/console/segments    segment sizes (now and over time), the overlap of every pair of
                     segments as a heat map (affinity, from the last recompute's
                     sketches), the last export report of each segment and destination
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from starlette.requests import Request

from cookiematch.dmp.funnel import FunnelRow, PathDelivery
from cookiematch.dmp.segment_exports import SegmentExports
from cookiematch.dmp.segments.service import SegmentService
from cookiematch.dmp.service import DmpService
from cookiematch.errors import NotFound
from cookiematch.storage.base import Store
from cookiematch.web.console.app import Page
from cookiematch.web.console.html import chart, heat_map, table
from cookiematch.web.console.series import Selection
from cookiematch.web.console.session import Session
from cookiematch.web.console.store import STORE_SELECTIONS, store_charts

__all__ = ["MAX_HEAT_SEGMENTS", "dmp_pages", "selections"]

MAX_HEAT_SEGMENTS = 24  # the heat map's rows and columns at most (the largest segments)


def selections(segments: SegmentService) -> tuple[Selection, ...]:
    """The DMP's series; segment sizes are read from ``segments`` at each point."""

    async def sizes() -> dict[str, float]:
        return {k: float(v) for k, v in (await segments.sizes()).items()}

    return (
        Selection("funnel", "cookiematch_dmp_sync_funnel", ("scope", "id", "stage")),
        Selection("ingested", "cookiematch_dmp_ingested_records", ("partner", "outcome")),
        Selection("rejects", "cookiematch_dmp_ingest_rejects", ("partner", "reason")),
        Selection("delivered", "cookiematch_dmp_delivered_values", ("partner", "path")),
        Selection("segment_sizes", "", ("segment",), counter=False, probe=sizes),
        *STORE_SELECTIONS,
    )


def _rows(rows: Mapping[str, FunnelRow], stages: tuple[str, ...]) -> list[list[str]]:
    return [
        [name, *(str(row.counts.get(s, 0)) for s in stages), str(row.loss), f"{row.loss_rate:.1%}"]
        for name, row in rows.items()
    ]


def _path(path: PathDelivery | None) -> list[str]:
    if path is None:
        return ["-", "-", "-", "-"]
    return [str(path.sent), str(path.arrived), str(path.values), f"{path.arrival_rate:.1%}"]


def dmp_pages(
    service: DmpService, segments: SegmentService, exports: SegmentExports, store: Store
) -> list[Page]:
    """The DMP's pages over its service (the funnel), its segments and exports (which follow
    the definitions' changes) and the admin store (the funnel's read)."""

    async def funnel(request: Request, session: Session) -> str:
        report = await service.funnel_report(store)
        partner_stages = ("pixels", "callbacks", "rejected", "inband", "initiated")
        client_stages = ("tag_js", "tags_loaded", "pixels", "callbacks")
        delivery = [
            [partner, *_path(d.inband), *_path(d.s2s)] for partner, d in report.delivery.items()
        ]
        ingestion = [
            [
                partner,
                *(str(v) for v in row.counts.values()),
                ", ".join(f"{k} {v}" for k, v in row.rejected_by_reason.items()),
            ]
            for partner, row in report.ingestion.items()
        ]
        ingest_head = next(iter(report.ingestion.values())).counts if report.ingestion else {}
        per = ["sent", "arrived", "values", "arrival"]
        return (
            "<h2>Partners: sync pixels handed out and callbacks back</h2>"
            + table(
                ["partner", *partner_stages, "loss", "loss rate"],
                _rows(report.partners, partner_stages),
            )
            + "<h2>Clients</h2>"
            + table(
                ["client", *client_stages, "loss", "loss rate"],
                _rows(report.clients, client_stages),
            )
            + "<h2>Pixel-to-pixel (in-band) versus server-to-server arrival</h2>"
            + table(
                ["partner", *(f"in-band {h}" for h in per), *(f"S2S {h}" for h in per)], delivery
            )
            + "<h2>Ingestion</h2>"
            + table(["partner", *ingest_head, "rejected by reason"], ingestion)
            + "<div class=charts>"
            + chart("Sync funnel per second, by scope, id and stage", "funnel")
            + chart("Callbacks over pixels, by partner", "funnel", ratio=("callbacks", "pixels"))
            + chart("Attribute values delivered per second, by partner and path", "delivered")
            + chart("Records ingested per second, by partner and outcome", "ingested")
            + chart("Ingested records rejected per second, by reason", "rejects")
            + store_charts()
            + "</div>"
        )

    async def segment_page(request: Request, session: Session) -> str:
        service_now, exports_now = segments, exports
        sizes = await service_now.sizes()
        rows = [
            [s.id, s.description or "", str(sizes.get(s.id, 0))]
            for s in service_now.segments.values()
        ]
        largest = sorted(sizes, key=lambda s: -sizes[s])[:MAX_HEAT_SEGMENTS]
        try:
            _, pairs = await service_now.overlap([f"segment:{s}" for s in sorted(largest)],
                                                 exact=False)  # fmt: skip
            cells = {(p.a, p.b): p.affinity for p in pairs}
            names = [f"segment:{s}" for s in sorted(largest)]
            heat = heat_map(names, cells) if len(names) > 1 else "<p>Fewer than two segments.</p>"
        except NotFound as exc:
            heat = f"<p>{escape(exc.detail)}</p>"
        reports = []
        for segment_id in service_now.segments:
            for destination, found in (await exports_now.last_reports(segment_id)).items():
                reports.append([segment_id, destination, found.mode, str(found.members),
                                str(found.sent), str(found.added), str(found.rejected),
                                str(found.failed)])  # fmt: skip
        report_head = ["segment", "destination", "mode", "members", "sent", "added",
                       "rejected", "failed"]  # fmt: skip
        return (
            table(["segment", "description", "members"], rows)
            + "<div class=charts>"
            + chart("Segment sizes", "segment_sizes", minutes=24 * 60)
            + "</div><h2>Affinity between segments (the last recompute's sketches)</h2>"
            + heat
            + "<h2>Last export of each segment</h2>"
            + table(report_head, reports)
        )

    return [Page("/dmp", "Sync funnel", funnel), Page("/segments", "Segments", segment_page)]
