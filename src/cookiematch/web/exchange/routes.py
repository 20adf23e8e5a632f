"""The exchange's browser-facing routes: ``/pixel`` (the match tag) and ``/optout``.

Each handler parses (protocol), asks the domain, and renders the value it gets back. A
browser-facing route never answers 500 and never redirects anywhere but to a configured
buyer URL or to itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from cookiematch.errors import MatchTagError, QueryError
from cookiematch.exchange.cookie_match import Browser, CookieMatchService
from cookiematch.exchange.outcomes import PushRecorded, RedirectToBuyer, VerifyCookie
from cookiematch.privacy.request import read_privacy
from cookiematch.protocol.cookies import (
    OPT_OUT_VALUE,
    CookieSpec,
    IdCookie,
    format_browser_id,
    parse_browser_id,
    read_id_cookie,
)
from cookiematch.protocol.gpc import GPC_HEADER
from cookiematch.protocol.matchtag import parse_match_tag
from cookiematch.protocol.query import parse_query
from cookiematch.web.exchange import metrics
from cookiematch.web.forwarded import ProxyTrust
from cookiematch.web.http import Request, Response

log = logging.getLogger(__name__)

OPTOUT_ON_ERROR = Response.text(400, "The request could not be processed; please retry.\n")


@dataclass(frozen=True, slots=True)
class BrowserCookie:
    """Reads and writes the exchange cookie of a request."""

    spec: CookieSpec

    def read(self, request: Request) -> Browser | None:
        """The browser state, or None when the Cookie header is too large to be honest."""
        value = read_id_cookie(request.cookie_header, self.spec.name)
        if isinstance(value, str):
            return Browser(parse_browser_id(value))
        if value is IdCookie.OVERSIZED:
            return None
        return Browser(None, opted_out=value is IdCookie.OPTED_OUT)

    def set(self, browser_id: bytes) -> str:
        return self.spec.header(format_browser_id(browser_id))

    def opt_out(self) -> str:
        return self.spec.header(OPT_OUT_VALUE)


class ExchangeRoutes:
    """Handlers for the exchange's browser-facing paths."""

    def __init__(
        self,
        service: CookieMatchService,
        cookie: BrowserCookie,
        proxies: ProxyTrust,
        new_browser_id: Callable[[], bytes],
    ) -> None:
        self._service = service
        self._cookie = cookie
        self._proxies = proxies
        self._new_browser_id = new_browser_id

    async def pixel(self, request: Request) -> Response:
        """GET /pixel: the match tag."""
        try:
            parsed = parse_match_tag(parse_query(request.query))
        except (QueryError, MatchTagError) as exc:
            metrics.BAD_REQUESTS.inc((type(exc).__name__,))
            return Response.text(400, f"Bad request: {exc}\n")
        buyer = self._service.buyer(parsed.nid)
        if buyer is None:
            metrics.BAD_REQUESTS.inc(("UnknownNid",))
            return Response.text(400, "Bad request: unknown google_nid\n")
        browser = self._cookie.read(request)
        if browser is None:
            metrics.BAD_REQUESTS.inc(("CookieTooLarge",))
            return Response.text(400, "Bad request: Cookie header too large\n")
        # the privacy parameters are extras, forwarded to the buyer as they came (also when
        # the other extras are dropped for size)
        privacy = read_privacy(parsed.extras, request.header(GPC_HEADER))
        outcome = await self._service.match(
            parsed, buyer, browser, self._proxies.scheme(request), privacy.signals
        )
        if isinstance(outcome, RedirectToBuyer):
            metrics.record_redirect(outcome)
            return Response.redirect(outcome.location)
        if isinstance(outcome, VerifyCookie):
            metrics.PIXEL_OUTCOMES.inc((outcome.nid, "set_cookie"))
            location = f"{request.path}?{outcome.query}"
            return Response.redirect(location, set_cookies=(self._cookie.set(outcome.browser_id),))
        assert isinstance(outcome, PushRecorded)
        metrics.PIXEL_OUTCOMES.inc((outcome.nid, "push" if outcome.stored else "push_not_stored"))
        return Response.pixel()

    async def optout(self, request: Request) -> Response:
        """GET /optout marks the browser opted out; ``?undo=1`` gives it a fresh ID."""
        try:
            params = {p.name: p.value for p in parse_query(request.query)}
        except QueryError as exc:
            return Response.text(400, f"Bad request: {exc}\n")
        if params.get("undo") in ("1", "true"):
            cookie = self._cookie.set(self._new_browser_id())
            message = "Personalised advertising is allowed again for this browser."
        else:
            cookie = self._cookie.opt_out()
            message = "This browser is opted out: it will no longer be matched with buyers."
        body = (
            f"<!doctype html><meta charset=utf-8><title>cookiematch opt-out</title><p>{message}</p>"
        )
        return Response.html(200, body, headers=(("Set-Cookie", cookie),))
