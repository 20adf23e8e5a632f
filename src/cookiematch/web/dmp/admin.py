"""The DMP's admin endpoints over the browser-facing service.

    GET /admin/v1/health                              no authentication
    GET /admin/v1/openapi.json                        no authentication: this API's contract
                                                      (web/openapi.py, web/dmp/api_spec.py)
    GET /admin/v1/profiles/{dmp_uid}                  {"dmp_uid", "partners", "synced_at",
                                                       "events", "inband", "attributes",
                                                       "ingested_events", ...} or 404
    GET /admin/v1/profiles?partner=<p>&uid=<uid>      the profile that partner ID is matched to
    GET /admin/v1/funnel                              the sync funnel per partner and client

Partners, segments and destinations (``web/dmp/definitions_admin.py``), segments' sizes and
overlap (``web/dmp/segments.py``), schedules (``web/dmp/schedules.py``) and partner data
(``web/dmp/ingest.py``) have their own route sets; the composition root (``roots/dmp.py``)
mounts them all behind the admin token.
"""

from __future__ import annotations

from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route as StarletteRoute

from cookiematch.dmp.service import DmpService
from cookiematch.errors import NotFound, ValidationFailed
from cookiematch.storage.base import Store
from cookiematch.web.admin import HEALTH_ROUTE, PREFIX, json_response

__all__ = ["DmpAdmin"]


class DmpAdmin:
    """The admin endpoints over one service."""

    def __init__(self, service: DmpService, funnel_store: Store | None = None) -> None:
        """``funnel_store``: the store the funnel is read through (the admin store: its
        deadline is the admin API's, not a browser request's)."""
        self.service = service
        self._funnel_store = funnel_store

    async def profile(self, request: StarletteRequest) -> StarletteResponse:
        dmp_uid: str = request.path_params["dmp_uid"]
        found = await self.service.profile(dmp_uid)
        if found is None:
            raise NotFound(f"no profile {dmp_uid!r}")
        return json_response(found)

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
        return json_response(found)

    async def funnel(self, request: StarletteRequest) -> StarletteResponse:
        return json_response(await self.service.funnel_report(self._funnel_store))

    def routes(self) -> list[StarletteRoute]:
        return [
            HEALTH_ROUTE,
            StarletteRoute(f"{PREFIX}/profiles", self.find_profile, methods=["GET"]),
            StarletteRoute(f"{PREFIX}/profiles/{{dmp_uid}}", self.profile, methods=["GET"]),
            StarletteRoute(f"{PREFIX}/funnel", self.funnel, methods=["GET"]),
        ]
