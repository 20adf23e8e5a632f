"""``/match``'s common case straight from the RSGI scope (the route's ``direct``).

The exchange's redirect after a match tag, as browsers bring it: a query of ``google_gid`` and
``google_cver`` alone, each once, plain characters only (nothing to percent-decode), a gid and
a cver that are valid, no privacy signal (no privacy parameter, no ``Sec-GPC`` header), and the
buyer's cookie holding a uid, something else or nothing (not ``OPT_OUT``, not oversized). It is
read into locals, the match written through the domain (``Matcher.redirect_common``: the same
write, counts and policy count as :meth:`Matcher.redirect`), and answered with headers built
once per answer kind, the cookie's value (a uid's canonical spelling) the only variable one.
Everything else returns None before anything is done and ``BuyerRoutes.match`` answers it;
both write the same bytes and count the same (tests/web/test_direct_match.py).
"""

from __future__ import annotations

from typing import Any

from cookiematch.buyer.ids import MAX_GID_LENGTH, parse_cver, parse_gid, parse_uid
from cookiematch.buyer.matching import Matcher
from cookiematch.protocol.cookies import IdCookie, read_id_cookie
from cookiematch.protocol.gpc import GPC_HEADER
from cookiematch.web.buyer.routes import BuyerCookie
from cookiematch.web.http import HeaderPairs, Response
from cookiematch.web.router import Answer, DirectHeaders, Pending

__all__ = ["DirectMatch", "read_match_query"]

_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_MAX_QUERY = len("google_gid=&google_cver=") + MAX_GID_LENGTH + 10


def read_match_query(query: str) -> tuple[str, int] | None:
    """The gid and cver of a query that is ``google_gid=G&google_cver=C`` (either order),
    both valid and plain, else None (the general path's)."""
    if len(query) > _MAX_QUERY:
        return None
    first, amp, second = query.partition("&")
    if not amp:
        return None
    if first.startswith("google_gid="):
        gid, cver = first[11:], second
    else:
        gid, cver = second, first
        if not gid.startswith("google_gid="):
            return None
        gid = gid[11:]
    if not cver.startswith("google_cver=") or not _PLAIN.issuperset(gid):
        return None
    number = parse_cver(cver[12:])
    if number is None or parse_gid(gid) is None:
        return None
    return gid, number


class DirectMatch:
    """``Route.direct`` for ``/match``."""

    def __init__(self, matcher: Matcher, cookie: BuyerCookie, *, pixel_204: bool) -> None:
        self._matcher = matcher
        self._cookie = cookie
        self._name = cookie.spec.name
        pixel = Response.no_content() if pixel_204 else Response.pixel()
        self._status, self._body = pixel.status, pixel.body
        self._plain: Answer = (pixel.status, pixel.headers, pixel.body)
        self._headers: HeaderPairs = pixel.headers

    def __call__(self, scope: Any) -> DirectHeaders | Pending | None:
        """A ``Pending`` of the whole answer, or None."""
        headers = scope.headers
        if GPC_HEADER in headers or not self._matcher.common_redirects:
            return None
        read = read_match_query(scope.query_string)
        if read is None:
            return None
        cookies = headers.get_all("cookie")
        uid = None
        if cookies:
            value = read_id_cookie(
                cookies[0] if len(cookies) == 1 else "; ".join(cookies), self._name
            )
            if isinstance(value, str):
                uid = parse_uid(value)
            elif value is not IdCookie.ABSENT:
                return None  # oversized, or opted out: the general path's
        return self._answer(read[0], read[1], uid)

    async def _answer(self, gid: str, cver: int, uid: bytes | None) -> Answer:
        result = await self._matcher.redirect_common(gid, cver, uid)
        browser = result.browser
        if browser is None or not (browser.new or result.outcome == "recorded"):
            return self._plain
        headers = (*self._headers, ("Set-Cookie", self._cookie.set(browser.uid)))
        return self._status, headers, self._body
