"""The exchange's browser-facing match tag route, ``/pixel``, and the exchange cookie
(``/optout`` is ``optout.py``).

Each handler parses (protocol), asks the domain, and renders the value it gets back. A
browser-facing route never answers 500 and never redirects anywhere but to a configured
buyer URL or to itself.
"""

from __future__ import annotations

import logging
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
    """The handler of the match tag."""

    def __init__(
        self, service: CookieMatchService, cookie: BrowserCookie, proxies: ProxyTrust
    ) -> None:
        self._service = service
        self._cookie = cookie
        self._proxies = proxies

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
