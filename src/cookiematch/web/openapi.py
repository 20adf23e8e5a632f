"""The OpenAPI 3.1 document of a role's admin API, generated from the msgspec types the
handlers decode requests into and build answers from (JSON Schema 2020-12, as OpenAPI 3.1
uses): no second, hand-written schema.

Each role keeps one registry of ``Operation``s (``web/<role>/api_spec.py``). ``document``
builds the document from the routes an admin application serves and that registry, and
refuses (``ValueError``) a route under ``/admin/v1`` (or another prefix the role publishes,
e.g. the DMP's ingestion API under ``/api/v1``) that has no operation: a route cannot be
added without its contract. ``with_openapi`` adds the route serving it at
``GET /admin/v1/openapi.json``, without a token (like ``/admin/v1/health``: the contract holds
no data).

Every guarded operation documents the guard's problems (401, 403 for a credential without
the route's scope, 503 for a failed store; an operation may take another bearer token than
the admin token, e.g. a partner's ingest token), a body's (400 not JSON, 413 too large, 422
invalid), and the statuses its handler raises; all as ``application/problem+json``
(RFC 9457, ``web/admin.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.secret import MASK, Secret
from cookiematch.web.admin import (
    HEALTH_PATH,
    OPENAPI_PATH,
    PREFIX,
    PROBLEM_JSON,
    Health,
    Problem,
)

__all__ = [
    "ADMIN_TOKEN",
    "NO_BODY",
    "Header",
    "Link",
    "Operation",
    "Query",
    "document",
    "links",
    "path_types",
    "with_openapi",
]

NO_BODY = None
"""A response without a body (e.g. 204)."""
ADMIN_TOKEN = "admin_token"
"""The security scheme of the role's admin token."""

_PARAM = re.compile(r"{([a-z_]+)}")
_REF = "#/components/schemas/{name}"


@dataclass(frozen=True, slots=True)
class Query:
    """A query parameter: its name, its value's type and what it means."""

    name: str
    type: Any
    description: str
    required: bool = False
    repeated: bool = False  # ?name=a&name=b


@dataclass(frozen=True, slots=True)
class Header:
    """A request header an operation reads, or a header of its success answers."""

    name: str
    type: Any
    description: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Link:
    """An OpenAPI link: the ``status`` answer gives the ``parameters`` (name -> runtime
    expression, e.g. ``$response.body#/buyers/0/nid``) of the operation ``method path``."""

    status: int
    method: str
    path: str
    parameters: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Operation:
    """One method on one admin route, as the route is written (``/admin/v1/buyers/{nid}``).

    ``answers`` maps each success status to the type of its JSON body (``NO_BODY``: none);
    ``path_params`` the type of a path parameter that is not any string;
    ``body`` is the request body's type (``application/json``), ``media`` the types of the
    body under other media types; ``headers`` the request headers it reads, ``replies`` the
    headers of its success answers; ``problems`` the statuses the handler itself raises (the
    guard's and a body's are added). ``token``: the security scheme of the bearer token it
    takes; ``scope``: a party's credential with this scope may call it too; ``public``: no
    token needed. ``location``: the answers with these statuses carry a ``Location`` header.
    ``links``: the operations its answers give the parameters of."""

    method: str
    path: str
    summary: str
    answers: Mapping[int, Any]
    body: Any = None
    media: Mapping[str, Any] = field(default_factory=dict)  # media type -> body type
    query: Sequence[Query] = ()
    headers: Sequence[Header] = ()
    replies: Sequence[Header] = ()
    problems: Sequence[int] = ()
    token: str = ADMIN_TOKEN
    scope: str | None = None
    public: bool = False
    location: Sequence[int] = (201, 202)
    description: str = ""
    path_params: Mapping[str, Any] = field(default_factory=dict)  # name -> type (else str)
    links: Sequence[Link] = ()

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path


def path_types(types: Mapping[str, Any], *operations: Operation) -> tuple[Operation, ...]:
    """``operations`` with the type of each of their path parameters named in ``types``."""
    return tuple(
        replace(op, path_params={n: t for n, t in types.items() if f"{{{n}}}" in op.path})
        for op in operations
    )


def links(status: int, parameters: Mapping[str, str], *targets: str) -> tuple[Link, ...]:
    """``Link``s from the ``status`` answer to each of ``targets`` ("METHOD path"), each with
    the ``parameters`` its path names."""
    found = []
    for target in targets:
        method, _, path = target.partition(" ")
        given = {k: v for k, v in parameters.items() if f"{{{k}}}" in path}
        found.append(Link(status, method, path, given))
    return tuple(found)


def _schema_hook(tp: type) -> dict[str, Any]:
    """The JSON Schema of the field types msgspec does not know."""
    if tp is RedirectTemplate:
        return {
            "type": "string",
            "description": "a URL template of the Cookie Matching Service (its macros are "
            "checked when the value is read)",
        }
    if tp is object:
        return {"description": "any JSON value"}
    if isinstance(tp, type) and issubclass(tp, Secret):
        return {"type": "string", "description": f"a secret; answers show {MASK!r} instead"}
    raise NotImplementedError(f"no schema for {tp!r}")


def served(routes: Iterable[BaseRoute], prefixes: Sequence[str]) -> set[tuple[str, str]]:
    """(method, path) of every endpoint under ``prefixes`` among ``routes`` (HEAD left
    out)."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Route) and route.path.startswith(tuple(p + "/" for p in prefixes)):
            found.update((m, route.path) for m in route.methods or () if m != "HEAD")
    return found


def document(
    title: str,
    description: str,
    routes: Iterable[BaseRoute],
    operations: Iterable[Operation],
    *,
    credential: str | None = None,
    tokens: Mapping[str, str] | None = None,
    prefixes: Sequence[str] = (PREFIX,),
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the ``operations`` that ``routes`` serve under
    ``prefixes``. ``credential``: what a party's scoped credential is (None: the role has
    only the admin token); ``tokens``: the other bearer tokens its operations take (security
    scheme -> what the token is)."""
    registry = {op.key: op for op in operations}
    serving = served(routes, prefixes)
    missing = sorted(serving - registry.keys())
    if missing:
        raise ValueError(f"routes without an OpenAPI operation: {missing}")
    chosen = [registry[key] for key in sorted(serving)]
    types = [Problem, *(t for op in chosen for t in _types(op))]
    schemas, components = msgspec.json.schema_components(
        types, schema_hook=_schema_hook, ref_template=_REF
    )
    by_type = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in chosen:
        entry = _operation(op, by_type, credential, serving)
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    described = {ADMIN_TOKEN: "the role's admin_token: every admin operation", **(tokens or {})}
    if credential is not None:
        described["credential"] = credential
    schemes = {
        name: {"type": "http", "scheme": "bearer", "description": what}
        for name, what in described.items()
    }
    built = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "v1", "description": description},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": schemes},
        "security": [{ADMIN_TOKEN: []}],
    }
    # plain JSON values (a tuple default becomes a list)
    return msgspec.json.decode(msgspec.json.encode(built), type=dict[str, Any])


def _types(op: Operation) -> list[Any]:
    found = [t for t in op.answers.values() if t is not NO_BODY]
    found += [q.type for q in op.query]
    found += [h.type for h in (*op.headers, *op.replies)]
    found += list(op.path_params.values())
    found += list(op.media.values())
    return [*found, op.body] if op.body is not None else found


def _problems(op: Operation) -> list[int]:
    if op.public:
        return sorted(set(op.problems))
    statuses = {401, 403, 503, *op.problems}
    if op.body is not None:
        statuses |= {400, 413, 422}
    return sorted(statuses)


def _operation_id(method: str, path: str) -> str:
    name = path.removeprefix(PREFIX).strip("/").replace("/", "_")
    return f"{method.lower()}_{name.replace('{', '').replace('}', '')}"


def _operation(
    op: Operation,
    by_type: Mapping[Any, dict[str, Any]],
    credential: str | None,
    serving: set[tuple[str, str]],
) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": _operation_id(*op.key), "summary": op.summary}
    if op.description:
        out["description"] = op.description
    params = [
        {
            "name": p,
            "in": "path",
            "required": True,
            "schema": by_type[op.path_params[p]] if p in op.path_params else {"type": "string"},
        }
        for p in _PARAM.findall(op.path)
    ]
    for q in op.query:
        schema = by_type[q.type]
        params.append(
            {
                "name": q.name,
                "in": "query",
                "required": q.required,
                "description": q.description,
                "schema": {"type": "array", "items": schema} if q.repeated else schema,
                **({"explode": True, "style": "form"} if q.repeated else {}),
            }
        )
    for h in op.headers:
        header = {"name": h.name, "in": "header", "required": h.required}
        params.append({**header, "description": h.description, "schema": by_type[h.type]})
    if params:
        out["parameters"] = params
    if op.body is not None:
        bodies = {"application/json": op.body, **op.media}
        out["requestBody"] = {
            "required": True,
            "content": {media: {"schema": by_type[tp]} for media, tp in bodies.items()},
        }
    responses: dict[str, Any] = {}
    for status, tp in sorted(op.answers.items()):
        answer: dict[str, Any] = {"description": HTTPStatus(status).phrase}
        if tp is not NO_BODY:
            answer["content"] = {"application/json": {"schema": by_type[tp]}}
        headers = {
            h.name: {"description": h.description, "schema": by_type[h.type]}
            | {"required": h.required}
            for h in op.replies
        }
        if status in op.location:
            headers["Location"] = {"schema": {"type": "string"}, "required": True}
        if headers:
            answer["headers"] = headers
        links = {
            _operation_id(link.method, link.path): {
                "operationId": _operation_id(link.method, link.path),
                "parameters": dict(link.parameters),
            }
            for link in op.links
            if link.status == status and (link.method, link.path) in serving
        }
        if links:
            answer["links"] = links
        responses[str(status)] = answer
    for status in _problems(op):
        responses[str(status)] = {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": by_type[Problem]}},
        }
    out["responses"] = responses
    if op.public:
        out["security"] = []
    elif op.scope is not None and credential is not None:
        out["security"] = [{op.token: []}, {"credential": [op.scope]}]
    elif op.token != ADMIN_TOKEN:
        out["security"] = [{op.token: []}]
    return out


HEALTH = Operation("GET", HEALTH_PATH, "Liveness of the admin listener", {200: Health}, public=True)
OPENAPI = Operation(
    "GET",
    OPENAPI_PATH,
    "This document",
    {200: dict[str, Any]},
    public=True,
    description="The OpenAPI 3.1 document of this role's admin API; no token needed.",
)
COMMON = (HEALTH, OPENAPI)
"""The operations every role's admin API has."""


def with_openapi(
    title: str,
    description: str,
    routes: Sequence[BaseRoute],
    operations: Iterable[Operation],
    *,
    credential: str | None = None,
    tokens: Mapping[str, str] | None = None,
    prefixes: Sequence[str] = (PREFIX,),
) -> list[BaseRoute]:
    """``routes`` and ``GET /admin/v1/openapi.json`` serving their document, built now (a
    route without its operation fails here, when the application is built); the keywords
    are ``document``'s."""

    async def serve(_: Request) -> Response:
        return Response(body, media_type="application/json")

    every = [*routes, Route(OPENAPI_PATH, serve, methods=["GET"])]
    built = document(
        title, description, every, operations,
        credential=credential, tokens=tokens, prefixes=prefixes,
    )  # fmt: skip
    body = msgspec.json.encode(built)
    return every
