"""The DMP's ``/optout`` on its own domain (the flow every role shares: ``web/optout.py``) over
the DMP cookie.

Opting out erases the browser's uid (``dmp/subjects.py``: its profile, partner IDs,
memberships and export state; each destination it was exported to is sent the removal by the
next export), then sets the DMP cookie to ``OPT_OUT``. While it holds that, the DMP's browser
routes set no cookie, fire no sync and store nothing (``web/dmp/routes.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cookiematch.protocol.cookies import (
    OPT_OUT_VALUE,
    CookieSpec,
    IdCookie,
    parse_browser_id,
    read_id_cookie,
)
from cookiematch.web.http import Request
from cookiematch.web.optout import Visitor

__all__ = ["DmpOptOutCookie"]


@dataclass(frozen=True, slots=True)
class DmpOptOutCookie:
    """The DMP cookie as the opt-out reads and writes it."""

    spec: CookieSpec
    new_uid: Callable[[], str]

    def visitor(self, request: Request) -> Visitor | None:
        value = read_id_cookie(request.cookie_header, self.spec.name)
        if value is IdCookie.OVERSIZED:
            return None
        if isinstance(value, str) and parse_browser_id(value) is not None:
            return Visitor(value)
        return Visitor(None, opted_out=value is IdCookie.OPTED_OUT)

    def opt_out(self) -> str:
        return self.spec.header(OPT_OUT_VALUE)

    def fresh(self) -> str:
        return self.spec.header(self.new_uid())
