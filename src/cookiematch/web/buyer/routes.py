"""The buyer's hot routes: ``/match``, ``/push``, ``/matchtag`` and ``/bid``.

Each handler parses (protocol), asks the domain (``cookiematch.buyer``), and renders the
value it gets back. Browser-facing routes never answer 500: bad input gets a pixel (or a
clear 400 where no image is expected), and the only redirect goes to the configured
exchange URL.

``/match``, ``/push`` and ``/matchtag`` read the privacy parameters the exchange passes through
(``gdpr``, ``gdpr_consent``, ``us_privacy``, ``gpp``, ``gpp_sid``) and ``Sec-GPC``, decoded once
into the ``ConsentSignals`` the domain asks the policy with (``privacy/request.py``: a
parameter that does not parse is a signal that does not decode, so no consent), never a reason
to answer differently than with a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

from cookiematch.buyer.bidder import Bidder
from cookiematch.buyer.ids import format_uid, parse_uid
from cookiematch.buyer.matching import Browser, Matcher, RedirectParams
from cookiematch.errors import BidRequestError, QueryError
from cookiematch.privacy.request import read_privacy
from cookiematch.privacy.signals import ConsentSignals
from cookiematch.protocol.cookies import CookieSpec, IdCookie, read_id_cookie
from cookiematch.protocol.openrtb import decode_bid_request, encode_bid_response
from cookiematch.protocol.query import QueryParam, parse_query
from cookiematch.web.http import Request, Response

OPENRTB_VERSION = ("X-OpenRTB-Version", "2.6")
NO_BID = Response.no_content().with_headers(OPENRTB_VERSION)
BID_HEADERS = Response.json(200, None).with_headers(OPENRTB_VERSION).headers  # built once
NO_TAG = Response.no_content()


def consent_of(
    params: tuple[QueryParam, ...], request: Request
) -> tuple[ConsentSignals, tuple[QueryParam, ...]]:
    """The request's consent signals, read as every role reads them (``privacy/request.py``),
    and its privacy parameters as received, to carry on a tag (so that the exchange reads the
    same signals, malformed ones included)."""
    privacy = read_privacy(params, request.headers.get("sec-gpc"))
    return privacy.signals, privacy.received


@dataclass(frozen=True, slots=True)
class BuyerCookie:
    """Reads and writes the buyer's own cookie (its uid)."""

    spec: CookieSpec

    def read(self, request: Request) -> tuple[bool, bytes | None]:
        """``(readable, uid)``: not readable when the Cookie header is oversized."""
        value = read_id_cookie(request.cookie_header, self.spec.name)
        if isinstance(value, str):
            return True, parse_uid(value)
        return value is not IdCookie.OVERSIZED, None

    def set(self, uid: bytes) -> str:
        return self.spec.header(format_uid(uid))


class BuyerRoutes:
    """Handlers for the buyer's hot paths."""

    def __init__(
        self, matcher: Matcher, bidder: Bidder, cookie: CookieSpec, *, pixel_204: bool = False
    ) -> None:
        self._matcher = matcher
        self._bidder = bidder
        self._stats = matcher.stats
        self._cookie = BuyerCookie(cookie)
        self._pixel_204 = pixel_204

    def _cookies(self, browser: Browser | None, *, refresh: bool = False) -> tuple[str, ...]:
        if browser is None or not (browser.new or refresh):
            return ()
        return (self._cookie.set(browser.uid),)

    def _pixel(self, cookies: tuple[str, ...] = ()) -> Response:
        return Response.no_content(cookies) if self._pixel_204 else Response.pixel(cookies)

    def _parse(
        self, request: Request, event: str
    ) -> tuple[RedirectParams, bytes | None, ConsentSignals] | None:
        """The redirect's parameters, the cookie's uid and the consent signals, or None
        (counted) if unusable."""
        try:
            query = parse_query(request.query)
        except QueryError:
            self._stats.add(event, "bad_query")
            return None
        readable, uid = self._cookie.read(request)
        if not readable:
            self._stats.add(event, "cookie_too_large")
            return None
        return RedirectParams.parse(query), uid, consent_of(query, request)[0]

    async def match(self, request: Request) -> Response:
        """GET /match: the exchange's redirect after a match tag. Always a pixel (or 204)."""
        parsed = self._parse(request, "match")
        if parsed is None:
            return self._pixel()
        result = await self._matcher.redirect(*parsed)
        recorded = result.outcome == "recorded"
        return self._pixel(self._cookies(result.browser, refresh=recorded))

    async def push(self, request: Request) -> Response:
        """GET /push: pixel matching; 302 back to the exchange with the same google_push."""
        parsed = self._parse(request, "push")
        if parsed is None:
            return self._pixel()
        result = await self._matcher.push(*parsed)
        cookies = self._cookies(result.match.browser, refresh=result.match.outcome == "recorded")
        if result.location is None:
            return self._pixel(cookies)
        return Response.redirect(result.location, cookies)

    async def matchtag(self, request: Request) -> Response:
        """GET /matchtag: ``{"url": ...}`` when the browser needs matching, else 204.

        ``?format=redirect``: a 302 to the match tag instead, or a pixel when fresh (for an
        ``<img>`` in an ad).
        """
        try:
            query = parse_query(request.query)
        except QueryError as exc:
            return Response.text(400, f"Bad request: {exc}\n")
        params = {p.name: p.value for p in query}
        redirect = params.get("format") == "redirect"
        readable, uid = self._cookie.read(request)
        if not readable:
            return self._pixel() if redirect else Response.text(400, "Cookie header too large\n")
        signals, privacy = consent_of(query, request)
        result = await self._matcher.match_tag(uid, signals, privacy)
        cookies = self._cookies(result.browser)
        if redirect:
            return Response.redirect(result.url, cookies) if result.url else self._pixel(cookies)
        if result.url is None:
            return Response.no_content(cookies)
        response = Response.json(200, {"url": result.url, "reason": result.decision.reason.value})
        return response.with_headers(*(("Set-Cookie", c) for c in cookies))

    async def bid(self, request: Request) -> Response:
        """POST /bid: an OpenRTB 2.6 bid response (200) or no bid (204); 400 if not a request."""
        try:
            bid_request = decode_bid_request(request.body)
        except BidRequestError as exc:
            self._stats.add("bid", "bad_request")
            return Response.text(400, f"Bad request: {exc}\n")
        result = await self._bidder.bid(bid_request)
        if result.response is None:
            return NO_BID
        return Response(200, BID_HEADERS, encode_bid_response(result.response))
