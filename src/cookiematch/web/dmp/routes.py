"""The DMP's browser-facing routes: plain handlers, no framework (docs/dmp.md).

    GET /tag.js?client=<id>             the container script
    GET /sync?client=<id>&gdpr=..       DMP cookie + {"pixels": [...]}, CORS with credentials
    GET /callback/<partner>?uid=<id>    stores the match, answers a pixel
    GET /inband/<partner>?uid=&kv=      the same plus key-values in the URL; a query over
                                        inband_max_bytes is refused whole (400, counted)
    GET /imp?campaign=&site=&creative=&event=imp|click|conv
    GET /audiences[?callback=<name>]    segment key-values, JSON, or JSONP for jsonp_origins

Pixel routes answer the GIF whatever happens: 200 when the request was recorded, 400 when it
was refused. JSON and script routes answer 400 text or JSON for bad input. Never a 500.

Every route but /tag.js reads the request's privacy parameters and ``Sec-GPC`` once
(``DmpService.consent``) and reads the DMP cookie only when the policy allows it (docs/privacy.md,
"Enforcement: the DMP"); /sync also reads it under a refusal, only to mark the profile refused.

A browser whose DMP cookie holds ``OPT_OUT`` (``GET /optout``, ``web/dmp/optout.py``) is answered
before any of that: no cookie is set, no partner is synced, nothing is stored (``/sync`` and
``/audiences`` say ``"opted_out": true``, the pixel routes answer the refused pixel).
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Sequence

import msgspec

from cookiematch.dmp.consent import RequestConsent
from cookiematch.dmp.events import parse_event
from cookiematch.dmp.model import (
    CLIENT_PARAM,
    COOKIE_TEST_PARAM,
    UID_PARAM,
    Client,
    DmpSettings,
)
from cookiematch.dmp.service import CallbackStatus, DmpService, SyncResult
from cookiematch.errors import InvalidURL, QueryError
from cookiematch.formats import ID_PATTERN
from cookiematch.privacy.request import read_privacy
from cookiematch.protocol.cookies import CookieSpec, IdCookie, parse_browser_id, read_id_cookie
from cookiematch.protocol.query import MAX_QUERY_BYTES, QueryParam, encode_query, parse_query
from cookiematch.protocol.url import parse_url
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
_COOKIE_TEST = QueryParam(COOKIE_TEST_PARAM, "1")

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
        "cmp_wait_ms": client.cmp_wait_ms,
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


def _page_origin(request: Request) -> str | None:
    """The origin of the page behind a request: its ``Origin`` header, else the origin of its
    ``Referer`` (a ``<script>`` request sends no Origin unless ``crossorigin`` is set); None
    when neither says."""
    origin = request.header("origin")
    if origin is not None:
        return origin.lower()
    referer = request.header("referer")
    if referer is None:
        return None
    try:
        return parse_url(referer).origin.lower()
    except InvalidURL:
        return None


def sync_body(result: SyncResult) -> dict[str, object]:
    """``{"pixels": [...], "container": {"storage": bool, "tags": [ids]}}`` (what the container
    tag may do on the page: keep its state in ``localStorage``, fire those of the client's
    other tags), and ``"privacy"`` naming what the policy refused, with its reasons:
    ``{"dmp_cookie": reason, "partners": {id: reason}, "tags": {id: reason}}`` (each only when
    refused)."""
    body: dict[str, object] = {
        "pixels": result.pixels,
        "container": {"storage": result.storage, "tags": result.allowed_tags()},
    }
    refused: dict[str, object] = {}
    if not result.store_id.allowed:
        refused["dmp_cookie"] = result.store_id.reason.value
    partners = result.decision.refused()
    if partners:
        refused["partners"] = {p: reason.value for p, reason in partners.items()}
    tags = result.refused_tags()
    if tags:
        refused["tags"] = {t: reason.value for t, reason in tags.items()}
    if refused:
        body["privacy"] = refused
    return body


class DmpRoutes:
    """Handlers over one ``DmpService``."""

    def __init__(self, service: DmpService, cookie: CookieSpec) -> None:
        self._service = service
        self._settings = service.settings
        self._cookie = cookie
        self._scripts = {c.id: tag_script(c, self._settings) for c in service.clients.values()}
        self._origins = frozenset().union(*(c.allowed_origins for c in service.clients.values()))

    # --- helpers ------------------------------------------------------------------------

    def consent(self, request: Request, parsed: Sequence[QueryParam]) -> RequestConsent:
        """The request's privacy parameters and ``Sec-GPC``, decoded once (cached per distinct
        parameters); one that is malformed or repeated is a signal that does not decode (no
        consent, an opt-out), as the exchange and the buyer read it: never a 400."""
        privacy = read_privacy(parsed, request.header("sec-gpc"))
        return self._service.judge(privacy.params, privacy.signals)

    def cookie(self, request: Request) -> str | IdCookie:
        """The DMP cookie as sent (read once per request, whatever the signals say: an opt-out
        is honoured before anything else)."""
        return read_id_cookie(request.cookie_header, self._cookie.name)

    def dmp_uid(self, value: str | IdCookie, consent: RequestConsent) -> str | None:
        """The browser's DMP ID from its cookie's ``value``, if the policy lets the DMP read
        it; raises QueryError for an oversized header."""
        if not consent.store_id.allowed:
            return None
        return self.cookie_uid(value)

    @staticmethod
    def cookie_uid(value: str | IdCookie) -> str | None:
        """The DMP ID of the cookie's ``value``, whatever the signals (``dmp_uid`` asks them
        first); raises QueryError for an oversized header."""
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
        cookie = self.cookie(request)
        if cookie is IdCookie.OPTED_OUT:
            self._service.funnel.other("opted_out")
            return self._json(200, {"pixels": [], "opted_out": True}, cors)
        try:
            consent = self.consent(request, parsed)
            dmp_uid = self.dmp_uid(cookie, consent)
            withdrawn = None if consent.store_id.allowed else self.cookie_uid(cookie)
        except QueryError as exc:
            return self._json(400, {"error": str(exc)}, cors)
        if withdrawn is not None:  # read only to mark the refusal (docs/privacy.md)
            await self._service.withdraw(withdrawn, consent)
        result = await self._service.sync(client, dmp_uid, consent)
        if result.dmp_uid is None:
            return self._json(200, sync_body(result), cors)
        set_cookie = ("Set-Cookie", self._cookie.header(result.dmp_uid))
        return self._json(200, sync_body(result), (*cors, set_cookie))

    async def callback(self, request: Request) -> Response:
        """GET /callback/<partner>?uid=<partner id>[&c=<client>][&gdpr=..][&dmp_tc=1]."""
        partner_id = request.path.removeprefix("/callback/")
        cookie = self.cookie(request)
        if cookie is IdCookie.OPTED_OUT:
            return self._refused("opted_out")
        try:
            parsed = parse_query(request.query)
            params = _params(request, parsed=parsed)
            consent = self.consent(request, parsed)
            dmp_uid = self.dmp_uid(cookie, consent)
        except QueryError:
            return self._refused("bad_query")
        if _PARTNER_ID.fullmatch(partner_id) is None:
            return self._refused("unknown_partner")
        status = await self._service.callback(
            partner_id, dmp_uid, params.get(UID_PARAM), params.get(CLIENT_PARAM),
            consent=consent, cookie_test=COOKIE_TEST_PARAM in params,
        )  # fmt: skip
        if status is CallbackStatus.VERIFY_COOKIE:
            return self._verify_cookie(partner_id, parsed)
        return STORED_PIXEL if status is CallbackStatus.STORED else REFUSED_PIXEL

    def _verify_cookie(self, partner_id: str, parsed: Sequence[QueryParam]) -> Response:
        """The first hop of a partner-initiated sync: a new DMP cookie and a 302 to this same
        callback, its parameters re-encoded plus the cookie test marker. The Location is a
        path on this host (the one the cookie is set for), never another site; a query that
        re-encodes past the query limit is refused, since its second hop could not be read."""
        query = encode_query((*parsed, _COOKIE_TEST))
        if len(query) > MAX_QUERY_BYTES:
            return self._refused("verify_too_long")
        dmp_uid = self._service.verify_cookie(partner_id)
        location = f"/callback/{partner_id}?{query}"
        return Response.redirect(location, (self._cookie.header(dmp_uid),))

    async def inband(self, request: Request) -> Response:
        """GET /inband/<partner>?uid=<partner id>&kv=<key>:<value>,...[&gdpr=..]"""
        partner_id = request.path.removeprefix("/inband/")
        cookie = self.cookie(request)
        if cookie is IdCookie.OPTED_OUT:
            return self._refused("opted_out")
        if len(request.query) > self._settings.inband_max_bytes:
            self._service.inband_too_large(partner_id)
            return REFUSED_PIXEL
        try:
            parsed = parse_query(request.query, max_bytes=self._settings.inband_max_bytes)
            params = _params(request, parsed=parsed)
            consent = self.consent(request, parsed)
            dmp_uid = self.dmp_uid(cookie, consent)
        except QueryError:
            return self._refused("inband_bad_query")
        if _PARTNER_ID.fullmatch(partner_id) is None:
            return self._refused("unknown_partner")
        status = await self._service.inband(
            partner_id, dmp_uid, params.get("uid"), params.get("kv") or "", consent=consent
        )
        return STORED_PIXEL if status is CallbackStatus.STORED else REFUSED_PIXEL

    async def imp(self, request: Request) -> Response:
        """GET /imp?campaign=&site=&creative=&event=: recorded on the profile (new: cookied);
        without ``STORE_ID`` nothing is recorded (a refused pixel)."""
        cookie = self.cookie(request)
        if cookie is IdCookie.OPTED_OUT:
            return self._refused("opted_out")
        try:
            parsed = parse_query(request.query)
            event = parse_event(_params(request, parsed=parsed))
            consent = self.consent(request, parsed)
            dmp_uid = self.dmp_uid(cookie, consent)
        except QueryError:
            return self._refused("bad_event")
        if not consent.store_id.allowed:
            return self._refused("event_privacy")
        cookies: tuple[str, ...] = ()
        if dmp_uid is None:
            dmp_uid = self._service.new_uid()
            cookies = (self._cookie.header(dmp_uid),)
        await self._service.impression(dmp_uid, event, consent)
        return Response.pixel(cookies)

    async def audiences(self, request: Request) -> Response:
        """GET /audiences[?callback=<js name>]: the browser's segment key-values; JSONP only
        for the pages of ``jsonp_origins``."""
        cookie = self.cookie(request)
        try:
            parsed = parse_query(request.query)
            callback = _params(request, parsed=parsed).get("callback")
            consent = self.consent(request, parsed)
            dmp_uid = self.dmp_uid(cookie, consent)
        except QueryError as exc:
            return Response.text(400, f"Bad request: {exc}\n")
        if callback is not None:
            if _JS_CALLBACK.fullmatch(callback) is None:
                return Response.text(400, "Bad request: callback must be a JavaScript name\n")
            refusal = self._jsonp_refusal(request)
            if refusal is not None:
                return Response.text(400, f"Bad request: {refusal}\n")
        body: dict[str, object]
        if cookie is IdCookie.OPTED_OUT:
            body = {"kv": {}, "opted_out": True}
        else:
            answer = await self._service.audiences(dmp_uid, consent)
            body = {"kv": answer.kv}
            if answer.refused is not None:
                body["privacy"] = answer.refused.value
        if callback is not None:
            script = f"/**/{callback}({js_literal(body)});".encode()
            return Response(200, (("Content-Type", _JS_TYPE), _NO_STORE, _NOSNIFF), script)
        cors = self.cors(request, self._origins) or ()
        return self._json(200, body, cors)

    def _jsonp_refusal(self, request: Request) -> str | None:
        """Why ``callback=`` is refused to this request, or None: JSONP hands the visitor's
        segments to whichever page includes the script, so only configured pages get it."""
        allowed = self._settings.jsonp_origins
        if not allowed:
            return "callback= (JSONP) is off on this DMP; read /audiences as JSON with CORS"
        origin = _page_origin(request)
        if origin is None:
            return "callback= (JSONP) needs the page's Origin or Referer"
        if origin not in allowed:
            return "callback= (JSONP) is not answered to this page's origin (jsonp_origins)"
        return None

    def _refused(self, reason: str) -> Response:
        self._service.funnel.other(f"rejected_{reason}")
        return REFUSED_PIXEL
