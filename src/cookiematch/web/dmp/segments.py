"""The DMP admin API for segments (behind the same guard as the rest of ``/admin/v1``).

GET /admin/v1/segments                 {"segments": [{"id", "description", "size"}],
                                        (sizes as the last recompute counted them)
                                        "last_recompute": {...} | null,
                                        "recompute_schedule": {"interval_seconds",
                                        "next_at", "holder"} | null (no schedule)}
GET /admin/v1/segments/{id}            {"id", "description", "rule", "size",
                                        "exports": {dest: report}}
PUT|DELETE /admin/v1/segments/{id}     the definition (``web/dmp/definitions_admin.py``)
GET /admin/v1/overlap?audience=A[&audience=B...][&mode=sketch|exact]
    one audience: its affinity to every other; several: every pair. Audiences are
    ``segment:<id>``, ``imp:<campaign>``, ``click:<campaign>``, ``conv:<campaign>``.
    ``sketch`` (default) reads the sketches of the last recompute; ``exact`` scans.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cookiematch.dmp.overlap import STD_DEVS
from cookiematch.dmp.schedule import Schedule
from cookiematch.dmp.segment_exports import SegmentExports
from cookiematch.dmp.segments.service import SegmentService
from cookiematch.errors import ValidationFailed
from cookiematch.web.admin import PREFIX, json_response
from cookiematch.web.dmp.api_spec import (
    ErrorBound,
    Overlap,
    OverlapPair,
    SegmentDetail,
    Segments,
    SegmentSummary,
)


class SegmentAdmin:
    def __init__(
        self,
        segments: SegmentService,
        exports: SegmentExports,
        schedule: Callable[[], Schedule | None] = lambda: None,
        rule: Callable[[str], object] = lambda segment_id: None,
    ) -> None:
        self.segments = segments
        self._exports = exports
        self._schedule = schedule  # the recompute's, if it is scheduled
        self._rule = rule  # a segment's rule as written

    async def list_segments(self, request: Request) -> Response:
        sizes = await self.segments.sizes()
        listing = [
            SegmentSummary(s.id, s.description, sizes.get(s.id, 0))
            for s in self.segments.segments.values()
        ]
        recompute = self._schedule()
        schedule = None if recompute is None else await recompute.state()
        return json_response(
            Segments(
                segments=listing,
                last_recompute=await self.segments.last_recompute(),
                recompute_schedule=schedule,
            )
        )

    async def segment(self, request: Request) -> Response:
        found = self.segments.segment(request.path_params["segment_id"])
        exports = await self._exports.last_reports(found.id)
        rule = self._rule(found.id)
        return json_response(
            SegmentDetail(
                id=found.id,
                description=found.description,
                rule=rule if isinstance(rule, dict) else None,
                size=(await self.segments.sizes()).get(found.id, 0),
                exports=exports,
            )
        )

    async def overlap(self, request: Request) -> Response:
        names = request.query_params.getlist("audience")
        mode = request.query_params.get("mode", "sketch")
        errors = []
        if not names:
            errors.append({"field": "audience", "message": "give one or more"})
        if mode not in ("sketch", "exact"):
            errors.append({"field": "mode", "message": "sketch or exact"})
        if errors:
            raise ValidationFailed("give ?audience=segment:<id>[&audience=...]", errors=errors)
        audiences, pairs = await self.segments.overlap(names, exact=mode == "exact")
        bound = audiences.error_bound()
        return json_response(
            Overlap(
                mode="exact" if mode == "exact" else "sketch",
                population=round(audiences.population_size().value),
                error_bound=None if bound is None else ErrorBound(round(bound, 4), STD_DEVS),
                pairs=[msgspec.convert(p.to_dict(), OverlapPair) for p in pairs],
            )
        )

    def routes(self) -> list[Route]:
        return [
            Route(f"{PREFIX}/segments", self.list_segments, methods=["GET"]),
            Route(f"{PREFIX}/segments/{{segment_id}}", self.segment, methods=["GET"]),
            Route(f"{PREFIX}/overlap", self.overlap, methods=["GET"]),
        ]
