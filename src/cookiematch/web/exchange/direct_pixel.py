"""``/pixel``'s common cases straight from the RSGI scope (the route's ``direct``).

A cookie match from a browser with a valid exchange cookie, extras, no other operation and no
privacy signal (no privacy parameter, no ``Sec-GPC`` header) is answered here, in one flat
call: the query read once (``protocol/common_tag.py``), the cookie read by name, the domain's
common case (``exchange/common_match.py``), and a header list whose only variable value is the
Location (safe by construction: ``protocol/gid_redirect.py``). The same tag with one
``google_hm`` (a hosted match, ``google_cm`` then optional) is the same call up to the
domain, which answers a coroutine:
the adapter awaits it (the write's group commit) and sends its 302. Everything else returns
None before anything is done, and ``ExchangeRoutes.pixel`` answers it; both write the same
bytes (tests/web/test_direct_pixel.py, tests/web/test_direct_hosted.py).

A match tag is a static URL on a page (the buyer's, the same for every browser), so the
cookie match's reading of a query (its ``google_nid`` and encoded extras) is remembered by
query string, up to ``MAX_TAGS`` of them of up to ``MAX_TAG_CHARS`` each (then all forgotten
at once): the same query reads the same, and a query seen again costs a look-up. A hosted
match's query carries its own data and is read each time. The cookie matches answered are counted in
``exchange/common_match.py``'s tally, added to ``cookiematch_pixel_outcomes`` at its fold.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from cookiematch.exchange.common_match import CommonMatch, HostedAnswer
from cookiematch.protocol.common_tag import read_tag
from cookiematch.protocol.cookies import parse_browser_id, read_id_cookie
from cookiematch.protocol.gpc import GPC_HEADER
from cookiematch.web.exchange import metrics
from cookiematch.web.forwarded import ProxyTrust
from cookiematch.web.router import DirectHeaders, Pending
from cookiematch.web.rsgi import peer_ip

__all__ = ["DirectPixel"]

_NO_STORE = ("Cache-Control", "no-store")  # as Response.redirect writes it
MAX_TAGS = 4096
"""Cookie-match queries whose reading is remembered."""
MAX_TAG_CHARS = 2048
"""The longest query remembered (a match tag's extras fit in 1 KiB): at most
``MAX_TAGS * MAX_TAG_CHARS`` characters of queries per worker."""
_Tag = tuple[str, tuple[str, ...]]


def _count_redirects(nid: str, n: int) -> None:
    metrics.PIXEL_OUTCOMES.inc((nid, "redirect"), n)


class DirectPixel:
    """``Route.direct`` for ``/pixel``."""

    def __init__(self, common: CommonMatch, cookie_name: str, proxies: ProxyTrust) -> None:
        self._location = common.location
        self._hosted = common.hosted
        self._cookie_name = cookie_name
        self._proxies = proxies
        self._tags: dict[str, _Tag] = {}
        common.on_matched = _count_redirects

    def __call__(self, scope: Any) -> DirectHeaders | Pending | None:
        headers = scope.headers
        if GPC_HEADER in headers:
            return None
        query = scope.query_string
        known = self._tags.get(query)
        if known is not None:
            nid, extras = known
            hm: str | None = None
        else:
            tag = read_tag(query, True)
            if tag is None:
                return None
            nid, extras_read, hm, cookie_match = tag
            extras = tuple(extras_read)
            if hm is None and len(query) <= MAX_TAG_CHARS:
                if len(self._tags) >= MAX_TAGS:
                    self._tags.clear()
                self._tags[query] = (nid, extras)
        cookies = headers.get_all("cookie")
        if not cookies:
            return None
        value = read_id_cookie(
            cookies[0] if len(cookies) == 1 else "; ".join(cookies), self._cookie_name
        )
        if not isinstance(value, str):
            return None
        browser_id = parse_browser_id(value)
        if browser_id is None:
            return None
        scheme = scope.scheme
        if self._proxies.trusting:
            scheme = self._proxies.scheme_of(scheme, peer_ip(scope.client), headers)
        if hm is not None:
            write = self._hosted(nid, browser_id, scheme, extras, hm, cookie_match)
            return None if write is None else _hosted(nid, write)
        location = self._location(nid, browser_id, scheme, extras)
        if location is None:
            return None
        return [("Location", location), _NO_STORE]


async def _hosted(nid: str, write: Coroutine[Any, Any, HostedAnswer]) -> DirectHeaders:
    """The hosted match's 302 once its write is acknowledged, counted as the general path
    counts it."""
    location, status = await write
    metrics.PIXEL_OUTCOMES.inc((nid, "redirect"))
    if status is not None:
        metrics.HOSTED_MATCH_FAILURES.inc((nid, str(status)))
    return [("Location", location), _NO_STORE]
