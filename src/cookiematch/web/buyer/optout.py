"""The buyer's opt-out: its own page (``/optout``) and the exchange's notices
(``POST /exchange/optout``).

``/optout`` is the flow every role shares (``web/optout.py``) over the buyer's cookie: the page
shows what the match table holds about the cookie's uid, for how long; opting out erases it
(``BuyerSubjects.erase``) and sets the cookie to ``OPT_OUT``.

``POST /exchange/optout`` is server to server (``buyer/optout.py``): the body is read up to the
notice's size limit (413 past it), then 204 (erased, or nothing held), 401 (signature missing,
wrong or stale), 400 (not a notice, or for another buyer), 503 (store failed: retry), as
``application/problem+json``.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route as StarletteRoute

from cookiematch.buyer.ids import NewUid, format_uid
from cookiematch.buyer.optout import ExchangeOptOuts, NoticeOutcome
from cookiematch.buyer.stats import BuyerStats
from cookiematch.errors import BodyTooLarge
from cookiematch.protocol.optout_notice import MAX_NOTICE_BYTES, SIGNATURE_HEADER
from cookiematch.web.admin import problem, read_body
from cookiematch.web.buyer.routes import BuyerCookie
from cookiematch.web.http import Request
from cookiematch.web.optout import Visitor

__all__ = ["EXCHANGE_OPTOUT_PATH", "OPTOUT_PATH", "BuyerOptOutCookie", "exchange_optout_route"]

OPTOUT_PATH = "/optout"
EXCHANGE_OPTOUT_PATH = "/exchange/optout"


@dataclass(frozen=True, slots=True)
class BuyerOptOutCookie:
    """The buyer's cookie as the opt-out reads and writes it (``web/optout.py``)."""

    cookie: BuyerCookie
    new_uid: NewUid

    def visitor(self, request: Request) -> Visitor | None:
        read = self.cookie.read(request)
        if not read.readable:
            return None
        return Visitor(None if read.uid is None else format_uid(read.uid), read.opted_out)

    def opt_out(self) -> str:
        return self.cookie.opt_out()

    def fresh(self) -> str:
        return self.cookie.set(self.new_uid())


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
