"""The DMP's opt-out page on its own domain: ``GET /optout`` and ``POST /optout``.

``GET`` shows whether this browser is opted out (the DMP cookie holds ``OPT_OUT``) and, if it has
a DMP uid, every record stored about it with how long each is kept; nothing changes. A
``POST`` acts only when the shared page (``web/optout_page.py``) accepts it as its own:

- ``optout``: the browser's uid is erased (``dmp/subjects.py``: its profile, partner IDs,
  memberships and export state; each destination it was exported to is sent the removal by the
  next export), then the DMP cookie is set to ``OPT_OUT``. While it holds that, the DMP's
  browser routes set no cookie, fire no sync and store nothing (``web/dmp/routes.py``).
- ``undo``: the opt-out cookie is replaced by a fresh DMP uid (nothing of the old one is left).

A store that fails answers 503 with a page saying nothing was changed (no cookie is set; an
erasure cut short is finished by the next attempt). Never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cookiematch.errors import StorageError
from cookiematch.privacy.subjects import SubjectData
from cookiematch.protocol.cookies import (
    OPT_OUT_VALUE,
    CookieSpec,
    IdCookie,
    parse_browser_id,
    read_id_cookie,
)
from cookiematch.web.http import Request, Response
from cookiematch.web.optout_page import OPT_OUT, UNDO, OptOutPage

__all__ = ["UNAVAILABLE", "DmpOptOut"]

log = logging.getLogger(__name__)

UNAVAILABLE = Response.html(
    503,
    "<!doctype html><meta charset=utf-8><title>Opt-out: try again</title>"
    "<p>The opt-out is unavailable for a moment; nothing was changed. Please try again.</p>",
    headers=(
        ("Retry-After", "5"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
        ("Referrer-Policy", "no-referrer"),
    ),
)
"""The answer when the store fails (also the route's ``on_error``)."""


class DmpOptOut:
    """The page's handler over the DMP's ``SubjectData`` and cookie."""

    def __init__(
        self,
        page: OptOutPage,
        subjects: SubjectData,
        cookie: CookieSpec,
        new_uid: Callable[[], str],
    ) -> None:
        self._page = page
        self._subjects = subjects
        self._cookie = cookie
        self._new_uid = new_uid

    async def handle(self, request: Request) -> Response:
        """GET /optout and POST /optout."""
        cookie = read_id_cookie(request.cookie_header, self._cookie.name)
        opted_out = cookie is IdCookie.OPTED_OUT
        uid = cookie if isinstance(cookie, str) and parse_browser_id(cookie) is not None else None
        try:
            if request.method != "POST":
                return await self._show(opted_out, uid)
            action = self._page.submitted(request)
            if action == OPT_OUT:
                return await self._opt_out(uid)
            if action == UNDO:
                return await self._undo(opted_out, uid)
            return self._page.refuse()
        except StorageError as exc:
            log.error("opt-out: the store failed: %s", exc)
            return UNAVAILABLE

    async def _show(self, opted_out: bool, uid: str | None, message: str | None = None) -> Response:
        records = [] if uid is None else (await self._subjects.access(uid)).records
        return self._page.show(opted_out=opted_out, records=records, message=message)

    async def _opt_out(self, uid: str | None) -> Response:
        erased, told = 0, 0
        if uid is not None:
            report = await self._subjects.erase(uid)
            erased, told = sum(report.erased.values()), len(report.notified)
        message = f"Opted out: {erased} record{'s' if erased != 1 else ''} erased."
        if told:
            message += f" {told} export{'s' if told != 1 else ''} will remove this browser's IDs."
        return self._page.show(
            opted_out=True,
            message=message,
            set_cookies=(self._cookie.header(OPT_OUT_VALUE),),
        )

    async def _undo(self, opted_out: bool, uid: str | None) -> Response:
        if not opted_out:  # nothing to undo: the browser keeps what it has
            return await self._show(False, uid)
        fresh = self._new_uid()
        return self._page.show(
            opted_out=False,
            message="This browser may be matched again, under a new ID.",
            set_cookies=(self._cookie.header(fresh),),
        )
