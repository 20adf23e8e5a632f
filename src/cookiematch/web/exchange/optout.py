"""The exchange's opt-out page, ``/optout`` (the shared page of ``web/optout_page.py``).

    GET  /optout    the page: whether this browser is opted out, what is stored about it and
                    for how long (the exchange's ``SubjectData.access``), one button; it
                    changes nothing (``?undo=1`` included)
    POST /optout    only when posted from the page (``OptOutPage.submitted``), else 403:
                    action=optout  erase what is stored, queue the notices to buyers, then
                                   set the opt-out cookie (``SameSite=None``, so that /pixel
                                   sees it in third-party context)
                    action=undo    a fresh browser ID: nothing of the old one carries over

A failed store never answers 500. The page says what did not happen, with status 503; a failed
erasure keeps the browser's ID cookie (no opt-out cookie), because the opt-out cookie would
replace the only handle on the data still stored: the retry must be able to find it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cookiematch.errors import StorageError
from cookiematch.exchange.subjects import ExchangeSubjects
from cookiematch.protocol.cookies import format_browser_id
from cookiematch.web.exchange import metrics
from cookiematch.web.exchange.routes import BrowserCookie
from cookiematch.web.http import Request, Response
from cookiematch.web.optout_page import OPT_OUT, UNDO, OptOutPage

__all__ = ["OPTOUT_ON_ERROR", "OptOutRoutes"]

log = logging.getLogger(__name__)

OPTOUT_ON_ERROR = Response.html(
    503,
    "<!doctype html><meta charset=utf-8><title>Opt-out</title>"
    "<p>The request could not be processed; nothing was changed. Please retry.</p>",
)
UNREADABLE = "What is stored about this browser cannot be read right now; please retry."
FAILED = (
    "The opt-out did not complete: the exchange's storage is unavailable, so what is stored"
    " may not all be erased. This browser keeps its ID so that a retry can erase it; it is"
    " not opted out yet. Please retry."
)
OPTED_OUT = "This browser is opted out: it will no longer be matched with buyers."
UNDONE = "Matching is allowed again, under a new browser ID: nothing of the old one is kept."


class OptOutRoutes:
    """``GET`` and ``POST`` of ``/optout``."""

    def __init__(
        self,
        page: OptOutPage,
        cookie: BrowserCookie,
        subjects: ExchangeSubjects,
        new_browser_id: Callable[[], bytes],
    ) -> None:
        self._page = page
        self._cookie = cookie
        self._subjects = subjects
        self._new_browser_id = new_browser_id

    async def optout(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._act(request)
        return await self._show(request)

    async def _show(self, request: Request) -> Response:
        browser = self._cookie.read(request)
        if browser is None or browser.browser_id is None:
            return self._page.show(opted_out=browser is not None and browser.opted_out)
        try:
            report = await self._subjects.access(format_browser_id(browser.browser_id))
        except StorageError as exc:
            log.warning("opt-out page: store unavailable: %s", exc)
            return self._page.show(opted_out=False, message=UNREADABLE, status=503)
        return self._page.show(opted_out=False, records=report.records)

    async def _act(self, request: Request) -> Response:
        action = self._page.submitted(request)
        if action is None:
            metrics.OPTOUTS.inc(("unknown", "refused"))
            return self._page.refuse()
        if action == UNDO:
            metrics.OPTOUTS.inc((UNDO, "done"))
            fresh = self._cookie.set(self._new_browser_id())
            return self._page.show(opted_out=False, message=UNDONE, set_cookies=(fresh,))
        assert action == OPT_OUT
        browser = self._cookie.read(request)
        if browser is not None and browser.browser_id is not None:
            try:
                report = await self._subjects.erase(format_browser_id(browser.browser_id))
            except StorageError as exc:
                log.warning("opt-out: erasure did not complete: %s", exc)
                metrics.OPTOUTS.inc((OPT_OUT, "failed"))
                return self._page.show(opted_out=False, message=FAILED, status=503)
            log.info("opt-out: erased %s, notices queued for %s", report.erased, report.notified)
        metrics.OPTOUTS.inc((OPT_OUT, "done"))
        return self._page.show(
            opted_out=True, message=OPTED_OUT, set_cookies=(self._cookie.opt_out(),)
        )
