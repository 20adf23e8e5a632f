"""What every role's ``/optout`` does, over the page of ``web/optout_page.py``:

    GET  /optout    the page: whether this browser is opted out, what the role stores about it
                    and for how long (its ``SubjectData.access``), one button; changes nothing
    POST /optout    only when posted from the page (``OptOutPage.submitted``), else 403:
                    optout  erase what is stored about the browser (``SubjectData.erase``:
                            the role queues what it must tell others), then set the role's
                            opt-out cookie
                    undo    an opted-out browser (or one without an ID) gets a fresh ID; one
                            with an ID keeps it (its page offered no undo)

A failed store answers 503 and sets no cookie: the browser keeps its ID, the only handle on
what a cut-short erasure left (repeating it finishes it). A Cookie header too large to read
is a 400 that changes nothing. Never a 500, never a redirect. Each answer is counted by
outcome (``opted_out``, ``undone``, ``unchanged``, ``refused``, ``failed``).

A role gives its cookie as a ``RoleCookie``: the browser's ``Visitor`` (the subject ID the
role's ``SubjectData`` takes), and the Set-Cookie values of an opt-out and of a fresh ID.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.privacy.subjects import SubjectData
from cookiematch.web.http import Request, Response
from cookiematch.web.optout_page import OPT_OUT, PAGE_HEADERS, UNDO, OptOutPage

__all__ = ["OPTOUT_ON_ERROR", "OptOutFlow", "RoleCookie", "Visitor"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Visitor:
    """What a role's cookie says: the ID the role knows the browser by (None: it has none,
    or it opted out) and whether it opted out."""

    subject: str | None
    opted_out: bool = False


class RoleCookie(Protocol):
    """A role's own cookie, as its opt-out needs it."""

    def visitor(self, request: Request) -> Visitor | None:
        """The browser's state; None when the Cookie header is too large to read."""

    def opt_out(self) -> str:
        """The Set-Cookie value that keeps the browser opted out."""

    def fresh(self) -> str:
        """The Set-Cookie value of a new ID."""


def _plain(status: int, text: str) -> Response:
    document = f"<!doctype html><meta charset=utf-8><title>Opt-out</title><p>{html.escape(text)}"
    return Response.html(status, document, headers=PAGE_HEADERS)


OPTOUT_ON_ERROR = _plain(503, "The opt-out is unavailable; nothing was changed. Please retry.")
"""The route's answer should anything unplanned fail."""
_COOKIE_TOO_LARGE = _plain(
    400, "Your browser sent a Cookie header too large to read; nothing was changed."
)
UNREADABLE = (
    "What is stored about this browser cannot be read right now; nothing was changed. Please retry."
)
FAILED = (
    "The opt-out did not complete: the storage is unavailable, so nothing was changed in this"
    " browser and what is stored may not all be erased yet. Please retry."
)
UNDONE = "This browser may be matched again, under a new ID: nothing of the old one is kept."


def _opted_out(erased: int, notices: int) -> str:
    text = f"Opted out: {erased} record{'s' if erased != 1 else ''} erased."
    if notices:
        plural = "s" if notices != 1 else ""
        text += f" {notices} notice{plural} to remove this browser's IDs will be sent."
    return text


class OptOutFlow:
    """``GET`` and ``POST /optout`` of one role; ``count`` receives each answer's outcome."""

    def __init__(
        self,
        page: OptOutPage,
        cookie: RoleCookie,
        subjects: SubjectData,
        count: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._page = page
        self._cookie = cookie
        self._subjects = subjects
        self._count = count

    async def handle(self, request: Request) -> Response:
        visitor = self._cookie.visitor(request)
        if visitor is None:
            return _COOKIE_TOO_LARGE
        if request.method != "POST":
            return await self._show(visitor)
        action = self._page.submitted(request)
        if action == OPT_OUT:
            return await self._opt_out(visitor)
        if action == UNDO:
            return await self._undo(visitor)
        self._count("refused")
        return self._page.refuse()

    async def _show(self, visitor: Visitor) -> Response:
        if visitor.subject is None:
            return self._page.show(opted_out=visitor.opted_out)
        try:
            report = await self._subjects.access(visitor.subject)
        except StorageError as exc:
            if not isinstance(exc, StoreUnavailable):  # the store's guard logs an outage once
                log.warning("opt-out page: the store failed: %s", exc)
            return self._page.show(opted_out=False, records=None, message=UNREADABLE, status=503)
        return self._page.show(opted_out=visitor.opted_out, records=report.records)

    async def _opt_out(self, visitor: Visitor) -> Response:
        erased = notices = 0
        if visitor.subject is not None:
            try:
                report = await self._subjects.erase(visitor.subject)
            except StorageError as exc:
                if not isinstance(exc, StoreUnavailable):  # the guard logs an outage once
                    log.warning("opt-out: the erasure did not complete: %s", exc)
                self._count("failed")
                return self._page.show(opted_out=False, records=None, message=FAILED, status=503)
            erased, notices = sum(report.erased.values()), len(report.notified)
        self._count("opted_out")
        return self._page.show(
            opted_out=True,
            message=_opted_out(erased, notices),
            set_cookies=(self._cookie.opt_out(),),
        )

    async def _undo(self, visitor: Visitor) -> Response:
        if visitor.subject is not None:  # not opted out: nothing to undo
            self._count("unchanged")
            return await self._show(visitor)
        self._count("undone")
        return self._page.show(opted_out=False, message=UNDONE, set_cookies=(self._cookie.fresh(),))
