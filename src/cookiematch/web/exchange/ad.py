"""``GET /ad``: the exchange's ad slot, an HTML document for an iframe (docs/auction.md).

    GET /ad?pub=<publisher id>&slot=<slot name>[&w=300&h=250]
           [&gdpr=&gdpr_consent=&us_privacy=&gpp=&gpp_sid=]   (and the Sec-GPC header)

Answers ``200 text/html``: the winner's ``adm`` in ``<div id="cm-ad" data-nid="<winner>">``
(empty ``data-house`` div when nobody bid) and, when a pixel match was chosen,
``<img id="cm-pixel-match" src="<push URL>">``. Sets the exchange cookie for a new browser.
A missing or unknown ``pub`` or a bad query answers 400 text; any other failure a blank ad.

Also here: the admin routes of the buyer monitoring. The winner's notice (``nurl``) goes out
through the bid transport (``web/outbound.py``).
"""

from __future__ import annotations

import html
import logging

from cookiematch.errors import QueryError
from cookiematch.exchange.ad_service import AdRequest, AdService, ServedAd
from cookiematch.exchange.cookie_match import Browser
from cookiematch.exchange.monitoring import Count
from cookiematch.privacy.request import read_privacy
from cookiematch.protocol.gpc import GPC_HEADER
from cookiematch.protocol.query import parse_query
from cookiematch.web.exchange import metrics
from cookiematch.web.exchange.routes import BrowserCookie
from cookiematch.web.forwarded import ProxyTrust
from cookiematch.web.http import Request, Response
from cookiematch.web.outbound import BidTransport

log = logging.getLogger(__name__)

MAX_PAGE_URL = 2048

_HEAD = (
    '<!doctype html><html><head><meta charset="utf-8"><title>Advertisement</title>'
    "<style>html,body{margin:0;padding:0;overflow:hidden;background:transparent}</style>"
    "</head><body>"
)
_TAIL = "</body></html>"
BLANK_AD_HTML = f'{_HEAD}<div id="cm-ad" data-house="1"></div>{_TAIL}'
BLANK_AD = Response.html(200, BLANK_AD_HTML)


def count_metric(nid: str, what: Count, n: int) -> None:
    """``BuyerMonitor``'s ``on_count``: mirror every count into Prometheus."""
    metrics.BUYER_EVENTS.inc((nid, what.value), n)


def render_ad(served: ServedAd) -> str:
    """The iframe document. The adm is the buyer's markup, inserted as is (the buyer decides
    what it shows, match tag included); everything the exchange writes is escaped."""
    parts = [_HEAD]
    if served.winner is None:
        parts.append('<div id="cm-ad" data-house="1"></div>')
    else:
        nid = html.escape(served.winner.nid, quote=True)
        crid = html.escape(served.winner.crid or "", quote=True)
        parts.append(
            f'<div id="cm-ad" data-nid="{nid}" data-crid="{crid}">{served.winner.adm}</div>'
        )
    if served.pixel_match is not None:
        src = html.escape(served.pixel_match.url, quote=True)
        parts.append(
            f'<img id="cm-pixel-match" src="{src}" width="1" height="1" alt="" '
            'style="position:absolute;left:0;top:0;border:0">'
        )
    parts.append(_TAIL)
    return "".join(parts)


class AdRoutes:
    """The ``/ad`` handler."""

    def __init__(
        self,
        service: AdService,
        cookie: BrowserCookie,
        proxies: ProxyTrust,
        transport: BidTransport,
    ) -> None:
        self._service = service
        self._cookie = cookie
        self._proxies = proxies
        self._transport = transport

    async def ad(self, request: Request) -> Response:
        try:
            query = parse_query(request.query)
        except QueryError as exc:
            return _bad(f"Bad request: {exc}\n", "QueryError")
        params: dict[str, str | None] = {}
        for param in query:
            params.setdefault(param.name, param.value)
        publisher = self._service.publisher(params.get("pub") or "")
        if publisher is None:
            return _bad("Bad request: missing or unknown pub\n", "UnknownPublisher")
        slot = params.get("slot") or ""
        width, height = _size(params.get("w"), 300), _size(params.get("h"), 250)
        if not 0 < len(slot) <= 64 or width is None or height is None:
            return _bad("Bad request: slot (1-64 chars) and w/h (1-4096) required\n", "BadSlot")
        browser = self._cookie.read(request)
        if browser is None:  # an oversized Cookie header: serve, but as nobody
            browser = Browser(None, opted_out=True)
        page = request.header("referer")
        served = await self._service.serve(
            AdRequest(
                publisher=publisher,
                slot=slot,
                browser=browser,
                scheme=self._proxies.scheme(request),
                width=width,
                height=height,
                page=page if page and len(page) <= MAX_PAGE_URL else None,
                user_agent=request.header("user-agent"),
                ip=self._proxies.client(request) or None,
                privacy=read_privacy(query, request.header(GPC_HEADER)),
            )
        )
        if served.winner is not None and served.winner.nurl:
            self._transport.notify(served.winner.nurl)
        new_id = served.set_browser_id
        cookies = () if new_id is None else (self._cookie.set(new_id),)
        return Response.html(200, render_ad(served), set_cookies=cookies)


def _bad(message: str, reason: str) -> Response:
    metrics.BAD_REQUESTS.inc((reason,))
    return Response.text(400, message)


def _size(text: str | None, default: int) -> int | None:
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 4):
        return None
    value = int(text)
    return value if 0 < value <= 4096 else None
