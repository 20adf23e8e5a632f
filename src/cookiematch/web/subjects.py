"""The admin API's access and erasure of one subject, the same in every role:

    GET    /admin/v1/subjects/{subject}   everything stored about it (GDPR art. 15), as JSON
    DELETE /admin/v1/subjects/{subject}   erase it (art. 17); answers what was removed

An identifier not in the role's format is a 400 problem; a failed store a 503 (the erasure may
be partial and is safe to repeat).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cookiematch.errors import AdminError, InvalidSubject
from cookiematch.privacy.subjects import SubjectData
from cookiematch.web.admin import PREFIX, json_response

__all__ = ["SUBJECTS_PATH", "subject_routes"]

SUBJECTS_PATH = f"{PREFIX}/subjects"


def subject_routes(data: SubjectData) -> list[Route]:
    """The two routes over ``data``."""

    async def access(request: Request) -> Response:
        try:
            report = await data.access(request.path_params["subject"])
        except InvalidSubject as exc:
            raise AdminError(str(exc)) from None
        return json_response(report)

    async def erase(request: Request) -> Response:
        try:
            report = await data.erase(request.path_params["subject"])
        except InvalidSubject as exc:
            raise AdminError(str(exc)) from None
        return json_response(report)

    path = SUBJECTS_PATH + "/{subject}"
    return [Route(path, access, methods=["GET"]), Route(path, erase, methods=["DELETE"])]
