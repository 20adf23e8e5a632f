"""Use cases of the browser-facing endpoints: the match redirect, pixel matching, the match tag.

Each takes parsed query parameters, the uid from the buyer's cookie (None when absent), the
request's consent signals and whether the cookie says the browser opted out at the buyer
(``GET /optout``), and returns a value saying what was done; the HTTP layer renders it
(pixel, 302, JSON) and sets the cookie when ``new_uid``. None of them raises for bad input:
malformed values are counted and nothing is written. A store failure on the way is counted and
reported, not raised.

Privacy (docs/buyer.md "Privacy"): every request but an opt-out asks the policy once whether
the buyer may keep its cookie (STORE_ID, the buyer being the host). Refused: the cookie's uid
is not used, no cookie is set, nothing is written, and a pixel-matching browser goes back to
the exchange without hosted data. ``google_error=1`` (the browser opted out of tracking, or
gave no consent, as the exchange says) erases what the table holds about the redirect's gid
and the cookie's uid, and sets no cookie. A browser opted out at the buyer (its cookie holds
``OPT_OUT``) is never matched: no cookie, no write, no match tag; its ``google_error=1``
still erases the gid's entries.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from cookiematch.buyer.ids import NewUid, parse_cver, parse_gid
from cookiematch.buyer.matchtable import MatchEntry, MatchTable
from cookiematch.buyer.matchtag import (
    OPTED_OUT_DECISION,
    PRIVACY_DECISION,
    MatchTagDecision,
    decide_match_tag,
)
from cookiematch.buyer.model import BuyerSettings
from cookiematch.buyer.stats import BuyerStats, code_label
from cookiematch.clock import Clock
from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.privacy.policy import Operation, PrivacyPolicy
from cookiematch.privacy.signals import SILENT, ConsentSignals
from cookiematch.protocol.query import QueryParam

log = logging.getLogger(__name__)

MAX_PUSH_LENGTH = 1024
OPTED_OUT = "1"
"""``google_error=1``: the exchange says the browser opted out (or gave no consent)."""


@dataclass(frozen=True, slots=True)
class RedirectParams:
    """The ``google_`` parameters of a redirect from the exchange (first occurrence wins)."""

    gid: str | None = None
    cver: str | None = None
    error: str | None = None
    push: str | None = None
    hm: str | None = None

    @classmethod
    def parse(cls, params: Sequence[QueryParam]) -> RedirectParams:
        found: dict[str, str] = {}
        for param in params:
            if param.name in _FIELDS and param.name not in found:
                found[param.name] = "" if param.value is None else param.value
        return cls(**{_FIELDS[name]: value for name, value in found.items()})


_FIELDS = {
    "google_gid": "gid",
    "google_cver": "cver",
    "google_error": "error",
    "google_push": "push",
    "google_hm": "hm",
}


@dataclass(frozen=True, slots=True)
class Browser:
    """The buyer uid to use for this browser and whether it was just created (set a cookie)."""

    uid: bytes
    new: bool


@dataclass(frozen=True, slots=True)
class MatchResult:
    """``outcome`` is ``recorded`` or why nothing was written; ``browser`` is None if untouched.

    ``may_store`` is False when the buyer may not keep a cookie for this browser (the policy
    refused STORE_ID, or the browser opted out): no cookie is set, no uid is handed on.
    """

    outcome: str
    browser: Browser | None = None
    entry: MatchEntry | None = None
    may_store: bool = True


@dataclass(frozen=True, slots=True)
class PushResult:
    """``location`` is the exchange URL to redirect to, or None to answer a plain pixel."""

    location: str | None
    match: MatchResult


@dataclass(frozen=True, slots=True)
class MatchTagResult:
    """``url`` is the match tag to load, or None when the entry is fresh."""

    url: str | None
    decision: MatchTagDecision
    browser: Browser | None  # None: the policy refused the buyer's cookie


class Matcher:
    """The buyer's side of cookie matching over one match table."""

    def __init__(
        self,
        table: MatchTable,
        settings: BuyerSettings,
        stats: BuyerStats,
        *,
        policy: PrivacyPolicy,
        new_uid: NewUid,
        clock: Clock,
    ) -> None:
        self.table = table
        self.settings = settings
        self.stats = stats
        self._policy = policy
        self._new_uid = new_uid
        self._clock = clock
        self._store_silent = policy.answer(Operation.STORE_ID, SILENT)
        """The policy's answer for a redirect without privacy signals, asked once
        (:meth:`redirect_common`); counted per request."""

    @property
    def common_redirects(self) -> bool:
        """Whether :meth:`redirect_common` answers: the policy lets the buyer keep its
        cookie for a browser that sends no privacy signal."""
        return self._store_silent.allowed

    def browser(self, uid: bytes | None, endpoint: str) -> Browser:
        """The cookie's uid, or a new one (counted by endpoint)."""
        if uid is not None:
            return Browser(uid, new=False)
        self.stats.add("uid_created", endpoint)
        return Browser(self._new_uid(), new=True)

    async def redirect(
        self,
        params: RedirectParams,
        uid: bytes | None,
        signals: ConsentSignals = SILENT,
        *,
        opted_out: bool = False,
    ) -> MatchResult:
        """GET /match: record gid <-> uid, unless the exchange reported an error, the browser
        opted out or the policy refuses the buyer's cookie; ``google_error=1`` erases the
        browser's entries."""
        result = await self._record(params, uid, signals, "match", opted_out)
        self.stats.add("match", result.outcome)
        return result

    async def redirect_common(self, gid: str, cver: int, uid: bytes | None) -> MatchResult:
        """GET /match's common case, as :meth:`redirect` answers it: a gid and a cver already
        valid, no ``google_error`` nor ``google_hm``, no privacy signal (where
        ``common_redirects``), the cookie's uid (None: a new one) not opted out."""
        self._policy.count((Operation.STORE_ID, self._store_silent.reason))
        result = await self._write(gid, cver, uid, "match")
        self.stats.add("match", result.outcome)
        return result

    async def push(
        self,
        params: RedirectParams,
        uid: bytes | None,
        signals: ConsentSignals = SILENT,
        *,
        opted_out: bool = False,
    ) -> PushResult:
        """GET /push: record the match if the gid is valid, then send the browser back.

        Without a ``google_push`` (or with an unusable one) there is nowhere to go back to:
        a plain pixel, nothing recorded. The way back carries the buyer's hosted data (with
        ``hosted_match``) and adds the browser to its ``push_user_lists`` (``google_ula``),
        the seed's "other requested operations". When the buyer may not keep a cookie for the
        browser, it goes back with neither and gets no cookie.
        """
        push = params.push
        if not push or len(push) > MAX_PUSH_LENGTH:
            outcome = "missing_push" if not push else "push_too_long"
            self.stats.add("push", outcome)
            return PushResult(None, MatchResult(outcome))
        match = await self._record(params, uid, signals, "push", opted_out)
        self.stats.add("push", f"redirect_{match.outcome}")
        if not match.may_store:
            return PushResult(self.settings.exchange.push_return_url(push), match)
        browser = match.browser or self.browser(uid, "push")
        hosted = browser.uid if self.settings.hosted_match else None
        lists = self.settings.push_user_lists
        location = self.settings.exchange.push_return_url(push, hosted, lists)
        return PushResult(location, MatchResult(match.outcome, browser, match.entry))

    async def match_tag(
        self,
        uid: bytes | None,
        signals: ConsentSignals = SILENT,
        forward: Sequence[QueryParam] = (),
        *,
        opted_out: bool = False,
    ) -> MatchTagResult:
        """GET /matchtag: the match tag URL for this browser, or None if its entry is fresh,
        it opted out, or the policy refuses the buyer's cookie. ``forward``: the request's
        privacy parameters, carried on to the tag (and by the exchange to ``/match``)."""
        if opted_out:
            self.stats.add("matchtag", OPTED_OUT_DECISION.reason.value)
            return MatchTagResult(None, OPTED_OUT_DECISION, None)
        if not self._policy.decide(Operation.STORE_ID, signals).allowed:
            self.stats.add("matchtag", PRIVACY_DECISION.reason.value)
            return MatchTagResult(None, PRIVACY_DECISION, None)
        browser = self.browser(uid, "matchtag")
        entry = None if browser.new else await self.table.by_uid(browser.uid)
        decision = decide_match_tag(entry, self._clock(), self.settings.stale_after_seconds)
        self.stats.add("matchtag", decision.reason.value)
        if not decision.serve:
            return MatchTagResult(None, decision, browser)
        hosted = browser.uid if self.settings.hosted_match else None
        url = self.settings.exchange.match_tag_url(hosted, forward)
        return MatchTagResult(url, decision, browser)

    async def _erase(self, gid: str | None, uid: bytes | None) -> MatchResult:
        """The browser opted out: forget its gid's and its uid's entries (both directions)."""
        result = MatchResult("error_1", may_store=False)
        gid = parse_gid(gid)
        if gid is None and uid is None:
            self.stats.add("opt_out", "nothing_known")
            return result
        try:
            erased = await self.table.erase(
                () if gid is None else (gid,), () if uid is None else (uid,)
            )
        except StorageError as exc:
            if not isinstance(exc, StoreUnavailable):  # the store's guard logs an outage once
                log.error("match table erase failed: %s", exc)
            self.stats.add("opt_out", "store_error")
            return result
        self.stats.add("opt_out", "erased" if any(erased) else "nothing_known")
        return result

    async def _record(
        self,
        params: RedirectParams,
        uid: bytes | None,
        signals: ConsentSignals,
        endpoint: str,
        opted_out: bool,
    ) -> MatchResult:
        if params.hm is not None:
            self.stats.add("hosted_match_status", code_label(params.hm))
        error = params.error
        if error == OPTED_OUT:
            return await self._erase(params.gid, uid)
        if opted_out:
            return MatchResult("opted_out", may_store=False)
        decision = self._policy.decide(Operation.STORE_ID, signals)
        if not decision.allowed:
            return MatchResult(f"refused_{decision.reason.value}", may_store=False)
        if error is not None:
            return MatchResult(f"error_{code_label(error)}")
        if params.gid is None:
            return MatchResult("no_gid")
        gid = parse_gid(params.gid)
        if gid is None:
            return MatchResult("malformed_gid")
        cver = parse_cver(params.cver)
        if cver is None:
            return MatchResult("malformed_cver")
        return await self._write(gid, cver, uid, endpoint)

    async def _write(self, gid: str, cver: int, uid: bytes | None, endpoint: str) -> MatchResult:
        """Record a valid match for the cookie's uid (or a new one)."""
        browser = self.browser(uid, endpoint)
        try:
            entry = await self.table.record(gid, browser.uid, cver)
        except StorageError as exc:
            if not isinstance(exc, StoreUnavailable):  # the store's guard logs an outage once
                log.error("match table write failed: %s", exc)
            return MatchResult("store_error", browser)
        return MatchResult("recorded", browser, entry)
