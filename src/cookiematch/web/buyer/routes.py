"""The buyer's hot routes: ``/match``, ``/push``, ``/matchtag``, ``/bid`` and ``/win``.

Each handler parses (protocol), asks the domain (``cookiematch.buyer``), and renders the
value it gets back. Browser-facing routes never answer 500: bad input gets a pixel (or a
clear 400 where no image is expected), and the only redirect goes to the configured
exchange URL.

``/match``, ``/push`` and ``/matchtag`` read the privacy parameters the exchange passes through
(``gdpr``, ``gdpr_consent``, ``us_privacy``, ``gpp``, ``gpp_sid``) and ``Sec-GPC``, decoded once
into the ``ConsentSignals`` the domain asks the policy with (``privacy/request.py``: a
parameter that does not parse is a signal that does not decode, so no consent), never a reason
to answer differently than with a pixel. A buyer cookie holding ``OPT_OUT`` (set by
``/optout``, ``web/buyer/optout.py``) is passed on as ``opted_out``: those routes then set no
cookie and store nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from cookiematch.buyer.bidder import Bidder, BidResult
from cookiematch.buyer.ids import format_uid, parse_uid
from cookiematch.buyer.matching import Browser, Matcher, RedirectParams
from cookiematch.buyer.wins import WinNotices, WinOutcome
from cookiematch.errors import BidRequestError, QueryError
from cookiematch.privacy.request import read_privacy
from cookiematch.privacy.signals import ConsentSignals
from cookiematch.protocol.cookies import OPT_OUT_VALUE, CookieSpec, IdCookie, read_id_cookie
from cookiematch.protocol.openrtb import decode_bid_request, encode_bid_response
from cookiematch.protocol.query import QueryParam, parse_query
from cookiematch.web.http import Request, Response
from cookiematch.web.router import Answer

OPENRTB_VERSION = ("X-OpenRTB-Version", "2.6")
NO_BID = Response.no_content().with_headers(OPENRTB_VERSION)
BID_HEADERS = Response.json(200, None).with_headers(OPENRTB_VERSION).headers  # built once
BAD_BID_HEADERS = Response.text(400, "").headers
NO_BID_ANSWER: Answer = (NO_BID.status, NO_BID.headers, NO_BID.body)
NO_TAG = Response.no_content()


def consent_of(
    params: tuple[QueryParam, ...], request: Request
) -> tuple[ConsentSignals, tuple[QueryParam, ...]]:
    """The request's consent signals, read as every role reads them (``privacy/request.py``),
    and its privacy parameters as received, to carry on a tag (so that the exchange reads the
    same signals, malformed ones included)."""
    privacy = read_privacy(params, request.headers.get("sec-gpc"))
    return privacy.signals, privacy.received


class CookieRead(NamedTuple):
    """What the buyer's cookie says: ``readable`` is False when the Cookie header is oversized;
    ``uid`` is None when there is no usable uid; ``opted_out`` when it holds ``OPT_OUT``."""

    readable: bool
    uid: bytes | None
    opted_out: bool = False


_UNREADABLE = CookieRead(False, None)
_NO_UID = CookieRead(True, None)
_OPTED_OUT = CookieRead(True, None, opted_out=True)


@dataclass(frozen=True, slots=True)
class BuyerCookie:
    """Reads and writes the buyer's own cookie: its uid, or ``OPT_OUT`` (``/optout``)."""

    spec: CookieSpec

    def read(self, request: Request) -> CookieRead:
        value = read_id_cookie(request.cookie_header, self.spec.name)
        if isinstance(value, str):
            return CookieRead(True, parse_uid(value))
        if value is IdCookie.OPTED_OUT:
            return _OPTED_OUT
        return _UNREADABLE if value is IdCookie.OVERSIZED else _NO_UID

    def set(self, uid: bytes) -> str:
        return self.spec.header(format_uid(uid))

    def opt_out(self) -> str:
        """The cookie that keeps the browser opted out, as long as a uid cookie would live."""
        return self.spec.header(OPT_OUT_VALUE)


class BuyerRoutes:
    """Handlers for the buyer's hot paths."""

    def __init__(
        self, matcher: Matcher, bidder: Bidder, cookie: BuyerCookie, *, pixel_204: bool = False
    ) -> None:
        self._matcher = matcher
        self._bidder = bidder
        self._stats = matcher.stats
        self._cookie = cookie
        self._pixel_204 = pixel_204

    def _cookies(self, browser: Browser | None, *, refresh: bool = False) -> tuple[str, ...]:
        if browser is None or not (browser.new or refresh):
            return ()
        return (self._cookie.set(browser.uid),)

    def _pixel(self, cookies: tuple[str, ...] = ()) -> Response:
        return Response.no_content(cookies) if self._pixel_204 else Response.pixel(cookies)

    def _parse(
        self, request: Request, event: str
    ) -> tuple[RedirectParams, CookieRead, ConsentSignals] | None:
        """The redirect's parameters, the cookie and the consent signals, or None (counted)
        if unusable."""
        try:
            query = parse_query(request.query)
        except QueryError:
            self._stats.add(event, "bad_query")
            return None
        cookie = self._cookie.read(request)
        if not cookie.readable:
            self._stats.add(event, "cookie_too_large")
            return None
        return RedirectParams.parse(query), cookie, consent_of(query, request)[0]

    async def match(self, request: Request) -> Response:
        """GET /match: the exchange's redirect after a match tag. Always a pixel (or 204)."""
        parsed = self._parse(request, "match")
        if parsed is None:
            return self._pixel()
        params, cookie, signals = parsed
        result = await self._matcher.redirect(
            params, cookie.uid, signals, opted_out=cookie.opted_out
        )
        recorded = result.outcome == "recorded"
        return self._pixel(self._cookies(result.browser, refresh=recorded))

    async def push(self, request: Request) -> Response:
        """GET /push: pixel matching; 302 back to the exchange with the same google_push."""
        parsed = self._parse(request, "push")
        if parsed is None:
            return self._pixel()
        params, cookie, signals = parsed
        result = await self._matcher.push(params, cookie.uid, signals, opted_out=cookie.opted_out)
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
        cookie = self._cookie.read(request)
        if not cookie.readable:
            return self._pixel() if redirect else Response.text(400, "Cookie header too large\n")
        signals, privacy = consent_of(query, request)
        result = await self._matcher.match_tag(
            cookie.uid, signals, privacy, opted_out=cookie.opted_out
        )
        cookies = self._cookies(result.browser)
        if redirect:
            return Response.redirect(result.url, cookies) if result.url else self._pixel(cookies)
        if result.url is None:
            return Response.no_content(cookies)
        response = Response.json(200, {"url": result.url, "reason": result.decision.reason.value})
        return response.with_headers(*(("Set-Cookie", c) for c in cookies))

    async def bid(self, request: Request) -> Response:
        """POST /bid (the ASGI adapter's; RSGI's calls :meth:`bid_answer` directly)."""
        return Response(*(await self.bid_answer(request.body)))

    async def bid_answer(self, body: bytes) -> Answer:
        """POST /bid: an OpenRTB 2.6 bid response (200) or no bid (204); 400 if not a request.
        From the body alone, with headers built once: the route's ``direct_body``."""
        try:
            bid_request = decode_bid_request(body)
        except BidRequestError as exc:
            self._stats.add("bid", "bad_request")
            return 400, BAD_BID_HEADERS, f"Bad request: {exc}\n".encode()
        return _bid_answer(await self._bidder.bid(bid_request, body))


def _bid_answer(result: BidResult) -> Answer:
    """A bid response (200), or no bid (204)."""
    response = result.response
    if response is None:
        return NO_BID_ANSWER
    return 200, BID_HEADERS, encode_bid_response(response)


WIN_ON_ERROR = Response.text(
    503, "Service unavailable: the notice was not recorded; retry it\n"
).with_headers(("Retry-After", "5"))
_WIN_ANSWERS = {
    WinOutcome.WON: Response.no_content(),
    WinOutcome.DUPLICATE: Response.no_content(),  # nothing for the exchange to retry
    WinOutcome.INVALID: Response.text(400, "Bad request: not a valid win notice\n"),
    WinOutcome.STORE_ERROR: WIN_ON_ERROR,
}


@dataclass(frozen=True, slots=True)
class WinRoute:
    """GET /win: the exchange's win notice (``buyer/wins.py``): 204 when valid (the first
    notice of a bid or a repeat), 400 when not, 503 when it could not be recorded; counted."""

    notices: WinNotices

    async def __call__(self, request: Request) -> Response:
        try:
            query: tuple[QueryParam, ...] | None = parse_query(request.query)
        except QueryError:
            query = None
        return _WIN_ANSWERS[await self.notices.receive(query)]
