"""The buyer's opt-out: its own page (``/optout``) and the exchange's notices
(``POST /exchange/optout``).

``GET /optout`` shows the shared page (``web/optout_page.py``) for the browser's buyer cookie:
opted out or not, and what the match table holds about its uid, for how long. A ``POST`` acts
only when ``OptOutPage.submitted`` accepts it: ``optout`` erases everything about the uid
(``BuyerSubjects.erase``) and then sets the cookie to ``OPT_OUT``; ``undo`` gives an opted-out
browser a fresh uid. A failed store answers 503 and changes nothing in the browser; a request
whose Cookie header is too large to read is a 400 that changes nothing. Never a 500, never a
redirect.

``POST /exchange/optout`` is server to server (``buyer/optout.py``): the body is read up to the
notice's size limit (413 past it), then 204 (erased, or nothing held), 401 (signature missing,
wrong or stale), 400 (not a notice, or for another buyer), 503 (store failed: retry), as
``application/problem+json``.
"""

from __future__ import annotations

import html

from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route as StarletteRoute

from cookiematch.buyer.ids import NewUid, format_uid
from cookiematch.buyer.optout import ExchangeOptOuts, NoticeOutcome
from cookiematch.buyer.stats import BuyerStats
from cookiematch.buyer.subjects import BuyerSubjects
from cookiematch.errors import BodyTooLarge, StorageError
from cookiematch.privacy.subjects import StoredRecord
from cookiematch.protocol.optout_notice import MAX_NOTICE_BYTES, SIGNATURE_HEADER
from cookiematch.web.admin import problem, read_body
from cookiematch.web.buyer.routes import BuyerCookie, CookieRead
from cookiematch.web.http import Request, Response
from cookiematch.web.optout_page import OPT_OUT, OptOutPage

__all__ = [
    "EXCHANGE_OPTOUT_PATH",
    "OPTOUT_ON_ERROR",
    "OPTOUT_PATH",
    "BuyerOptOutPage",
    "exchange_optout_route",
]

OPTOUT_PATH = "/optout"
EXCHANGE_OPTOUT_PATH = "/exchange/optout"
_FRAMING = (("X-Frame-Options", "DENY"), ("Content-Security-Policy", "default-src 'none'"))


def _plain_page(status: int, text: str) -> Response:
    """A page that only says what happened (the opt-out page cannot be shown)."""
    document = (
        f"<!doctype html><meta charset=utf-8><title>Opt-out</title><p>{html.escape(text)}</p>"
    )
    return Response.html(status, document, headers=_FRAMING)


OPTOUT_ON_ERROR = _plain_page(
    503, "The opt-out page is unavailable; nothing was changed. Please try again later."
)
_UNAVAILABLE = OPTOUT_ON_ERROR.with_headers(("Retry-After", "5"))
_COOKIE_TOO_LARGE = _plain_page(
    400, "Your browser sent a Cookie header too large to read; nothing was changed."
)


class BuyerOptOutPage:
    """``GET``/``POST /optout`` over the buyer's cookie and its ``SubjectData``."""

    def __init__(
        self,
        page: OptOutPage,
        cookie: BuyerCookie,
        subjects: BuyerSubjects,
        stats: BuyerStats,
        *,
        new_uid: NewUid,
    ) -> None:
        self._page = page
        self._cookie = cookie
        self._subjects = subjects
        self._stats = stats
        self._new_uid = new_uid

    async def handle(self, request: Request) -> Response:
        cookie = self._cookie.read(request)
        if not cookie.readable:
            return _COOKIE_TOO_LARGE
        if request.method != "POST":
            return await self._show(cookie)
        action = self._page.submitted(request)
        if action is None:
            self._stats.add("optout_page", "refused")
            return self._page.refuse()
        if action == OPT_OUT:
            return await self._opt_out(cookie)
        return await self._undo(cookie)

    async def _show(self, cookie: CookieRead, message: str | None = None) -> Response:
        records: list[StoredRecord] = []
        if cookie.uid is not None:
            try:
                records = (await self._subjects.access(format_uid(cookie.uid))).records
            except StorageError:
                return _UNAVAILABLE
        return self._page.show(opted_out=cookie.opted_out, records=records, message=message)

    async def _opt_out(self, cookie: CookieRead) -> Response:
        """Erase what is held about the cookie's uid, then keep the browser opted out."""
        if cookie.uid is not None:
            try:
                await self._subjects.erase(format_uid(cookie.uid))
            except StorageError:
                self._stats.add("optout_page", "store_error")
                return _UNAVAILABLE
        self._stats.add("optout_page", "opted_out")
        return self._page.show(
            opted_out=True,
            message="Done: what we held about this browser is erased, and it stays opted out.",
            set_cookies=(self._cookie.opt_out(),),
        )

    async def _undo(self, cookie: CookieRead) -> Response:
        """An opted-out browser (or one without a uid) gets a fresh uid; a browser with a uid
        keeps it (its page offered no undo)."""
        if cookie.uid is not None:
            self._stats.add("optout_page", "not_opted_out")
            return await self._show(cookie)
        self._stats.add("optout_page", "undone")
        return self._page.show(
            opted_out=False,
            message="Done: this browser may be matched again, under a new ID.",
            set_cookies=(self._cookie.set(self._new_uid()),),
        )


_NOTICE_ANSWERS: dict[NoticeOutcome, tuple[int, str]] = {
    NoticeOutcome.BAD_SIGNATURE: (
        401,
        f"a valid {SIGNATURE_HEADER} header (t=<unix seconds>,v1=<HMAC-SHA256>) is required",
    ),
    NoticeOutcome.BAD_BODY: (400, "the body is not an opt-out notice with a google_gid"),
    NoticeOutcome.WRONG_NID: (400, "the notice is for another buyer (nid)"),
    NoticeOutcome.STORE_ERROR: (503, "the store is unavailable; retry the notice"),
}


def exchange_optout_route(receiver: ExchangeOptOuts, stats: BuyerStats) -> StarletteRoute:
    """``POST /exchange/optout`` over ``receiver``."""

    async def receive(request: StarletteRequest) -> StarletteResponse:
        try:
            body = await read_body(request, MAX_NOTICE_BYTES)
        except BodyTooLarge:
            stats.add("exchange_optout", "too_large")
            raise
        outcome = await receiver.receive(body, request.headers.get(SIGNATURE_HEADER))
        if outcome in (NoticeOutcome.ERASED, NoticeOutcome.NOTHING_KNOWN):
            return StarletteResponse(status_code=204)
        status, detail = _NOTICE_ANSWERS[outcome]
        headers = {"Retry-After": "5"} if status == 503 else None
        if status == 401:
            headers = {"WWW-Authenticate": SIGNATURE_HEADER}
        return problem(status, detail, headers=headers)

    return StarletteRoute(EXCHANGE_OPTOUT_PATH, receive, methods=["POST"])
