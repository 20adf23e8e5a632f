"""Buyers' API credentials in the exchange's admin API (``exchange/credentials.py``).

    POST     /admin/v1/buyers/{nid}/credentials        {"scopes": [...]} -> 201 with "token"
    GET      /admin/v1/buyers/{nid}/credentials        {"credentials": [...]}, no tokens
    DELETE   /admin/v1/buyers/{nid}/credentials/{id}   revoked on every worker at its refresh

Only the admin token manages credentials. The token is in the ``POST``'s answer and nowhere
else: the exchange keeps its SHA-256. ``authenticator`` is what the admin guard asks about a
bearer token that is not the admin token.
"""

from __future__ import annotations

import logging
import time

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cookiematch.clock import Clock
from cookiematch.errors import NotFound, ValidationFailed
from cookiematch.exchange.credentials import authenticate, new_credential
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.web.admin import PREFIX, Authenticate, Principal, json_response, read_json
from cookiematch.web.exchange.api_spec import CredentialAnswer, Credentials, NewCredential

__all__ = ["authenticator", "credential_routes"]

log = logging.getLogger("cookiematch.admin")


def authenticator(registry: ExchangeRegistry) -> Authenticate:
    """The admin guard's ``authenticate``: a buyer's token -> its principal."""

    def principal(token: str) -> Principal | None:
        found = authenticate(registry, token)
        if found is None:
            return None
        return Principal(found.nid, frozenset(found.scopes), found.id)

    return principal


def credential_routes(registry: ExchangeRegistry, *, clock: Clock = time.time) -> list[BaseRoute]:
    """The three routes above, over ``registry``."""

    def buyer_of(request: Request) -> str:
        nid: str = request.path_params["nid"]
        if registry.buyer(nid) is None:
            raise NotFound(f"no buyer {nid!r}")
        return nid

    async def collection(request: Request) -> Response:
        nid = buyer_of(request)
        if request.method == "GET":
            found = registry.credentials(nid)
            return json_response(Credentials([CredentialAnswer.of(c) for c in found]))
        try:
            body = msgspec.convert(await read_json(request), NewCredential)
        except msgspec.ValidationError as exc:
            errors = [{"field": "scopes", "message": str(exc)}]
            raise ValidationFailed("invalid credential", errors=errors) from None
        token, credential = new_credential(nid, body.scopes, clock())
        problems = credential.problems()
        if problems:
            errors = [{"field": key, "message": message} for key, message in problems]
            raise ValidationFailed("invalid credential", errors=errors)
        await registry.put_credential(credential)
        log.info("admin: credential %s created for buyer %r", credential.id, nid)
        location = f"{PREFIX}/buyers/{nid}/credentials/{credential.id}"
        answer = CredentialAnswer.of(credential, token)
        return json_response(answer, 201, {"Location": location})

    async def one(request: Request) -> Response:
        nid = buyer_of(request)
        ident: str = request.path_params["credential_id"]
        found = registry.credential(ident)
        if found is None or found.nid != nid:
            raise NotFound(f"no credential {ident!r} of buyer {nid!r}")
        await registry.delete_credential(ident)
        log.info("admin: credential %s of buyer %r revoked", ident, nid)
        return Response(status_code=204)

    base = f"{PREFIX}/buyers/{{nid}}/credentials"
    return [
        Route(base, collection, methods=["GET", "POST"]),
        Route(f"{base}/{{credential_id}}", one, methods=["DELETE"]),
    ]
