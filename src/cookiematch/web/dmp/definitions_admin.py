"""The DMP admin API for partners, segments and destinations (``web/dmp/definitions.py``).

    GET                /admin/v1/partners              {"partners": [entry, ...]}
    GET|PUT|DELETE     /admin/v1/partners/{id}
    GET                /admin/v1/destinations          {"destinations": [entry, ...]}
    GET|PUT|DELETE     /admin/v1/destinations/{id}
    PUT|DELETE         /admin/v1/segments/{id}         (GET: ``web/dmp/segments.py``)

Bodies and answers are the keys of a ``[[dmp.partners]]`` / ``[[dmp.segments]]`` /
``[[dmp.destinations]]`` entry; ``id`` may be left out of a body (the path's). A PUT is
validated as the configuration file is (422 problem+json naming each bad key), stored, served
by this worker at once and by the others within a refresh; it answers the entry (201 with a
``Location`` when new). DELETE answers 204, or 409 naming the entries that still refer to it.
Secrets (``id_key``, ``ingest_token``, ``pull_token``, ``secret``, ``token``) are never shown:
answers carry ``MASK`` in their place, and a PUT that sends ``MASK`` back keeps the stored one.
"""

from __future__ import annotations

import logging
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cookiematch.config.dmp_entries import Kind
from cookiematch.web.admin import PREFIX, json_response, read_json
from cookiematch.web.dmp.api_spec import Destinations, Partners
from cookiematch.web.dmp.definitions import DmpDefinitions, encode_masked

__all__ = ["DefinitionAdmin"]

log = logging.getLogger("cookiematch.admin")


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return json_response(data, status, headers, encode=encode_masked)


class DefinitionAdmin:
    def __init__(self, definitions: DmpDefinitions) -> None:
        self._definitions = definitions

    def _listing(self, kind: Literal["partners", "destinations"]) -> Route:
        async def listing(request: Request) -> Response:
            current = self._definitions.current
            if kind == "partners":
                return _json(Partners(list(current.partners)))
            return _json(Destinations(list(current.destinations)))

        return Route(f"{PREFIX}/{kind}", listing, methods=["GET"])

    def _one(self, kind: Kind, methods: list[str]) -> Route:
        async def one(request: Request) -> Response:
            ident: str = request.path_params["ident"]
            if request.method == "PUT":
                entry, created = await self._definitions.put(kind, ident, await read_json(request))
                log.info("admin: %s %r %s", kind[:-1], ident, "created" if created else "replaced")
                location = {"Location": f"{PREFIX}/{kind}/{ident}"}
                return _json(entry, 201, location) if created else _json(entry)
            if request.method == "DELETE":
                await self._definitions.delete(kind, ident)
                log.info("admin: %s %r deleted", kind[:-1], ident)
                return Response(status_code=204)
            return _json(self._definitions.entry(kind, ident))

        return Route(f"{PREFIX}/{kind}/{{ident}}", one, methods=methods)

    def routes(self) -> list[Route]:
        every = ["GET", "PUT", "DELETE"]
        return [
            self._listing("partners"),
            self._one("partners", every),
            self._listing("destinations"),
            self._one("destinations", every),
            self._one("segments", ["PUT", "DELETE"]),
        ]
