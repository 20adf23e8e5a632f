"""``/pixel``'s common case straight from the RSGI scope (the route's ``direct``).

A cookie match from a browser with a valid exchange cookie, extras, no other operation and no
privacy signal (no privacy parameter, no ``Sec-GPC`` header) is answered here, in one flat
call: the query read once (``protocol/common_tag.py``), the cookie read by name, the domain's
common case (``exchange/common_match.py``), and a header list whose only variable value is the
Location (safe by construction: ``protocol/gid_redirect.py``). Everything else returns None
before anything is done, and ``ExchangeRoutes.pixel`` answers it; both write the same bytes
(tests/web/test_direct_pixel.py).
"""

from __future__ import annotations

from typing import Any

from cookiematch.exchange.common_match import CommonMatch
from cookiematch.protocol.common_tag import read_common_tag
from cookiematch.protocol.cookies import parse_browser_id, read_id_cookie
from cookiematch.protocol.gpc import GPC_HEADER
from cookiematch.web.exchange import metrics
from cookiematch.web.forwarded import ProxyTrust
from cookiematch.web.rsgi import peer_ip

__all__ = ["DirectPixel"]

_NO_STORE = ("Cache-Control", "no-store")  # as Response.redirect writes it


class DirectPixel:
    """``Route.direct`` for ``/pixel``."""

    def __init__(self, common: CommonMatch, cookie_name: str, proxies: ProxyTrust) -> None:
        self._location = common.location
        self._cookie_name = cookie_name
        self._proxies = proxies

    def __call__(self, scope: Any) -> list[tuple[str, str]] | None:
        headers = scope.headers
        if GPC_HEADER in headers:
            return None
        tag = read_common_tag(scope.query_string)
        if tag is None:
            return None
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
        nid, extras = tag
        location = self._location(nid, browser_id, scheme, extras)
        if location is None:
            return None
        metrics.PIXEL_OUTCOMES.inc((nid, "redirect"))
        return [("Location", location), _NO_STORE]
