"""The DMP's browser-facing routes: plain handlers, no framework (docs/dmp.md).

    GET /tag.js?client=<id>             the container script
    GET /sync?client=<id>&gdpr=..       DMP cookie + {"pixels": [...]}, CORS with credentials
    GET /callback/<partner>?uid=<id>    stores the match, answers a pixel
    GET /inband/<partner>?uid=&kv=      the same plus key-values in the URL, size-limited
    GET /imp?campaign=&site=&creative=&event=imp|click|conv
    GET /audiences[?callback=<name>]    segment key-values, JSON or JS callback

Pixel routes answer the GIF whatever happens: 200 when the request was recorded, 400 when it
was refused. JSON and script routes answer 400 text or JSON for bad input. Never a 500.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Sequence

import msgspec

from cookiematch.dmp.events import parse_event
from cookiematch.dmp.model import Client, DmpSettings
from cookiematch.dmp.service import CallbackStatus, DmpService
from cookiematch.errors import QueryError
from cookiematch.formats import ID_PATTERN
from cookiematch.protocol.cookies import CookieSpec, IdCookie, parse_browser_id, read_id_cookie
from cookiematch.protocol.privacy import parse_privacy
from cookiematch.protocol.query import MAX_QUERY_BYTES, QueryParam, parse_query
from cookiematch.web.http import HeaderPairs, Request, Response

_PARTNER_ID = re.compile(ID_PATTERN)
_JS_CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]{0,63}(?:\.[A-Za-z_$][A-Za-z0-9_$]{0,63}){0,3}")
_JS_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_JS_TYPE = "application/javascript; charset=utf-8"
_NO_STORE = ("Cache-Control", "no-store")
_NOSNIFF = ("X-Content-Type-Options", "nosniff")
TAG_MAX_AGE = 300

SYNC_ON_ERROR = Response.json(503, {"error": "temporarily unavailable", "pixels": []})
TEXT_ON_ERROR = Response.text(503, "temporarily unavailable\n")
REFUSED_PIXEL = Response.pixel(status=400)
STORED_PIXEL = Response.pixel()


def js_literal(value: object) -> str:
    """``value`` as a JSON literal safe to embed in a script."""
    text = msgspec.json.encode(value).decode()
    return re.sub("[<>&\u2028\u2029]", lambda m: _JS_ESCAPES[m.group(0)], text)


def tag_script(client: Client, settings: DmpSettings) -> bytes:
    """The container script of one client, built once at startup."""
    config = {
        "client": client.id,
        "sync": f"{settings.public_url}/sync?client={client.id}",
        "tags": [
            {
                "id": t.id,
                "url": t.url,
                "kind": t.kind.value,
                "cap": t.cap,
                "period_hours": t.cap_period_hours,
            }
            for t in client.tags
        ],
    }
    source = importlib.resources.files("cookiematch.web").joinpath("dmp_tag.js").read_text()
    return source.replace("__CONFIG__", js_literal(config)).encode()


def _params(
    request: Request, max_bytes: int = MAX_QUERY_BYTES, parsed: Sequence[QueryParam] | None = None
) -> dict[str, str | None]:
    """The query as a dict (first value wins); raises QueryError."""
    params: dict[str, str | None] = {}
    for param in parse_query(request.query, max_bytes=max_bytes) if parsed is None else parsed:
        params.setdefault(param.name, param.value)
    return params


class DmpRoutes:
    """Handlers over one ``DmpService``."""

    def __init__(self, service: DmpService, cookie: CookieSpec) -> None:
        self._service = service
        self._settings = service.settings
        self._cookie = cookie
        self._scripts = {c.id: tag_script(c, self._settings) for c in service.clients.values()}
        self._origins = frozenset().union(*(c.allowed_origins for c in service.clients.values()))

    # --- helpers ------------------------------------------------------------------------

    def dmp_uid(self, request: Request) -> str | None:
        """The browser's DMP ID from its cookie; raises QueryError for an oversized header."""
        value = read_id_cookie(request.cookie_header, self._cookie.name)
        if isinstance(value, str):
            return value if parse_browser_id(value) is not None else None
        if value is IdCookie.OVERSIZED:
            raise QueryError("Cookie header too large")
        return None

    @staticmethod
    def cors(request: Request, allowed: frozenset[str]) -> HeaderPairs | None:
        """CORS headers for an allowed Origin, ``()`` without Origin, None if refused."""
        origin = request.header("origin")
        if origin is None:
            return ()
        if origin.lower() not in allowed:
            return None
        return (
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Vary", "Origin"),
        )

    def _json(self, status: int, body: object, headers: HeaderPairs = ()) -> Response:
        return Response.json(status, body).with_headers(*headers)

    # --- handlers -----------------------------------------------------------------------

    async def tag_js(self, request: Request) -> Response:
        """GET /tag.js?client=<id>."""
        try:
            client = self._service.client(_params(request).get("client"))
        except QueryError as exc:
            return Response.text(400, f"Bad request: {exc}\n")
        if client is None:
            return Response.text(400, "Bad request: unknown client\n")
        self._service.tag_served(client)
        headers = (
            ("Content-Type", _JS_TYPE),
            ("Cache-Control", f"public, max-age={TAG_MAX_AGE}"),
            _NOSNIFF,
        )
        return Response(200, headers, self._scripts[client.id])

    async def sync(self, request: Request) -> Response:
        """GET /sync?client=<id> (and its CORS preflight)."""
        try:
            parsed = parse_query(request.query)
        except QueryError as exc:
            return self._json(400, {"error": str(exc)})
        client = self._service.client(_params(request, parsed=parsed).get("client"))
        if client is None:
            return self._json(400, {"error": "unknown client"})
        cors = self.cors(request, client.allowed_origins)
        if cors is None:
            return self._json(403, {"error": "origin not allowed for this client"})
        if request.method == "OPTIONS":
            allow = (("Access-Control-Allow-Methods", "GET"), ("Access-Control-Max-Age", "600"))
            return Response(204, (_NO_STORE, *cors, *allow))
        try:
            privacy = parse_privacy(parsed)
            dmp_uid = self.dmp_uid(request)
        except QueryError as exc:
            return self._json(400, {"error": str(exc)}, cors)
        result = await self._service.sync(client, dmp_uid, privacy)
        cookie = ("Set-Cookie", self._cookie.header(result.dmp_uid))
        return self._json(200, {"pixels": result.pixels}, (*cors, cookie))

    async def callback(self, request: Request) -> Response:
        """GET /callback/<partner>?uid=<partner id>[&c=<client>]."""
        partner_id = request.path.removeprefix("/callback/")
        try:
            params = _params(request)
            dmp_uid = self.dmp_uid(request)
        except QueryError:
            return self._refused("bad_query")
        if _PARTNER_ID.fullmatch(partner_id) is None:
            return self._refused("unknown_partner")
        status = await self._service.callback(
            partner_id, dmp_uid, params.get("uid"), params.get("c")
        )
        return STORED_PIXEL if status is CallbackStatus.STORED else REFUSED_PIXEL

    async def inband(self, request: Request) -> Response:
        """GET /inband/<partner>?uid=<partner id>&kv=<key>:<value>,..."""
        partner_id = request.path.removeprefix("/inband/")
        try:
            params = _params(request, self._settings.inband_max_bytes)
            dmp_uid = self.dmp_uid(request)
        except QueryError:
            return self._refused("inband_bad_or_too_large")
        if _PARTNER_ID.fullmatch(partner_id) is None:
            return self._refused("unknown_partner")
        status = await self._service.inband(
            partner_id, dmp_uid, params.get("uid"), params.get("kv") or ""
        )
        return STORED_PIXEL if status is CallbackStatus.STORED else REFUSED_PIXEL

    async def imp(self, request: Request) -> Response:
        """GET /imp?campaign=&site=&creative=&event=: recorded on the profile (new: cookied)."""
        try:
            event = parse_event(_params(request))
            dmp_uid = self.dmp_uid(request)
        except QueryError:
            return self._refused("bad_event")
        cookies: tuple[str, ...] = ()
        if dmp_uid is None:
            dmp_uid = self._service.new_uid()
            cookies = (self._cookie.header(dmp_uid),)
        await self._service.impression(dmp_uid, event)
        return Response.pixel(cookies)

    async def audiences(self, request: Request) -> Response:
        """GET /audiences[?callback=<js name>]: the browser's segment key-values."""
        try:
            callback = _params(request).get("callback")
            dmp_uid = self.dmp_uid(request)
        except QueryError as exc:
            return Response.text(400, f"Bad request: {exc}\n")
        if callback is not None and _JS_CALLBACK.fullmatch(callback) is None:
            return Response.text(400, "Bad request: callback must be a JavaScript name\n")
        body = {"kv": await self._service.audiences(dmp_uid)}
        if callback is not None:
            script = f"/**/{callback}({js_literal(body)});".encode()
            return Response(200, (("Content-Type", _JS_TYPE), _NO_STORE, _NOSNIFF), script)
        cors = self.cors(request, self._origins) or ()
        return self._json(200, body, cors)

    def _refused(self, reason: str) -> Response:
        self._service.funnel.other(f"rejected_{reason}")
        return REFUSED_PIXEL
