"""The bidder: look the user up, pick campaigns, answer with a bid or no bid, within tmax.

One look-up per request (``MatchTable.lookup``: its reads go out together, one round trip),
bounded by the request's ``tmax`` (or the configured default) minus a safety margin: a
look-up that would take longer is abandoned and the answer is no bid. The ad markup carries
the exchange's match tag when :func:`~cookiematch.buyer.matchtag.decide_match_tag` says the
user needs (re)matching. Each bid carries the signed ``nurl`` of its win notice when the buyer
has one (``buyer/wins.py``: ``WinUrls``).

Privacy (docs/buyer.md "Privacy"): the request's ``regs`` and ``user.consent`` are decoded
once (``privacy/openrtb.py`` ``bid_signals``) and the policy is asked whether the buyer (its
``host_vendor_id``) may PERSONALISE. Only then is the user looked up (gid, hosted data);
otherwise the request is answered as for an unknown user, without a match tag, and each bid's
``ext`` says why (``"privacy": <reason>``). The bid log records the reason either way, and
never an ID of the user (``buyer/bidlog.py``). A request
without signals costs a memo look-up (the policy remembers its answers).

Per request, only what depends on it is built: the match tag's HTML and each campaign's markup
with it are rendered once for the tags that do not depend on the user (nor on the request's
privacy parameters, which a tag carries on to the exchange), and the bid log's record is built
when the log is read.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence

import msgspec

from cookiematch.buyer.bidlog import BidLog, BidRecord
from cookiematch.buyer.campaigns import Campaign, Choice, choose
from cookiematch.buyer.ids import parse_gid, parse_hosted_uid
from cookiematch.buyer.matchtable import Lookup, MatchEntry, MatchTable
from cookiematch.buyer.matchtag import (
    PRIVACY_DECISION,
    MatchTagDecision,
    TagReason,
    decide_match_tag,
)
from cookiematch.buyer.model import BuyerSettings
from cookiematch.buyer.stats import BuyerStats
from cookiematch.buyer.stats import key as stats_key
from cookiematch.buyer.wins import WinUrls, bid_id
from cookiematch.clock import Clock
from cookiematch.deadlines import Deadlines
from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.privacy.openrtb import bid_privacy_params, bid_signals
from cookiematch.privacy.policy import Decision, Operation, PrivacyPolicy, Reason
from cookiematch.privacy.signals import SILENT
from cookiematch.protocol.openrtb import (
    CURRENCY,
    Bid,
    BidRequest,
    BidResponse,
    SeatBid,
    decode_bid_request,
)
from cookiematch.protocol.query import QueryParam, encode_query
from cookiematch.tally import counter, each_counter

log = logging.getLogger(__name__)


class BidResult(msgspec.Struct, frozen=True):
    """``response`` is None for no bid; ``outcome`` is ``"bid"`` or the no-bid reason."""

    response: BidResponse | None
    outcome: str


class _User(msgspec.Struct, frozen=True):
    """Who the request is about: ``uid`` is the hosted uid, else the gid entry's, else None."""

    gid: str | None
    hosted_uid: bytes | None
    lookup: Lookup
    uid: bytes | None

    @classmethod
    def of(cls, gid: str | None, hosted_uid: bytes | None, lookup: Lookup) -> _User:
        by_gid = lookup.by_gid
        uid = hosted_uid if hosted_uid is not None else by_gid.uid if by_gid is not None else None
        return cls(gid, hosted_uid, lookup, uid)

    @property
    def matched(self) -> bool:
        return self.uid is not None


_UNKNOWN = _User(None, None, Lookup(), None)
"""A user the buyer may not look up: answered as unknown."""


class _Answer(msgspec.Struct, frozen=True):
    """What one request got, for the bid log: the result, the user, the match-tag decision and
    the privacy policy's decision (None where the request ended before they were made)."""

    result: BidResult
    user: _User | None = None
    decision: MatchTagDecision | None = None
    privacy: Decision | None = None


class Bidder:
    """Answers OpenRTB bid requests for one buyer."""

    def __init__(
        self,
        table: MatchTable,
        campaigns: Sequence[Campaign],
        settings: BuyerSettings,
        stats: BuyerStats,
        bid_log: BidLog,
        *,
        policy: PrivacyPolicy,
        clock: Clock,
        win_urls: WinUrls | None = None,
    ) -> None:
        self.table = table
        self.campaigns = tuple(campaigns)
        self.settings = settings
        self.stats = stats
        self.bid_log = bid_log
        self._clock = clock
        self._policy = policy
        self._vendor_id = policy.settings.host_vendor_id
        self._deadlines = Deadlines()
        self._tag_url = self._shared_tag_url()
        self._win_urls = win_urls
        self._tag_html = _img(self._tag_url)
        self._common = _CommonCase.of(self)
        self._markup = {
            (id(campaign), tag): campaign.render(tag)
            for campaign in self.campaigns
            for tag in ("", self._tag_html)
        }

    def budget_seconds(self, request: BidRequest) -> float:
        """Time allowed for the look-up: ``tmax`` (or the default) minus the margin."""
        tmax = request.tmax if request.tmax and request.tmax > 0 else self.settings.tmax_ms
        return (tmax - self.settings.tmax_margin_ms) / 1000

    async def bid(self, request: BidRequest, body: bytes | None = None) -> BidResult:
        """The answer to ``request``, counted and logged. ``body``: the bytes it was decoded
        from, which the bid log keeps instead of the decoded request (one object instead of
        dozens; decoded again when the log is read)."""
        received_at = self._clock()
        gid = None if self._common is None else self._common_gid(request)
        if gid is None:
            answer = await self._bid(request, received_at)
            return self._answered(request, body, received_at, answer)
        table = self.table
        try:
            entry = table.entry_by_gid(gid, await table.read_gid(gid))
        except StorageError as exc:
            return self._common_failed(request, body, received_at, exc)
        return self._common_answer(request, body, received_at, gid, entry)

    def _answered(
        self, request: BidRequest, body: bytes | None, received_at: float, answer: _Answer
    ) -> BidResult:
        result, user = answer.result, answer.user
        self.stats.count(_BID_KEYS.get(result.outcome) or stats_key("bid", result.outcome))
        source: BidRequest | bytes = request if body is None else body
        matched = user is not None and user.matched
        self.bid_log.append_later(
            _record, source, received_at, result, matched, answer.decision, answer.privacy
        )
        return result

    def _common_gid(self, request: BidRequest) -> str | None:
        """The gid of a request of the common case, else None: one impression, no currency
        list or one with USD, a time limit the store's own deadline fits in, a gid, no
        privacy signal, no hosted match, and a policy that lets this buyer personalise
        without signals."""
        common = self._common
        if common is None or len(request.imp) != 1:
            return None
        cur = request.cur
        if cur and CURRENCY not in cur:
            return None
        user = request.user
        if user is None or user.id is None:
            return None
        # without these fields a request has no signal (privacy/openrtb.py, _fields)
        if (request.regs is not None or user.consent or user.ext) and bid_signals(
            request
        ) is not SILENT:
            return None
        if self.budget_seconds(request) <= common.deadline:
            return None
        return parse_gid(user.id)

    def _common_failed(
        self, request: BidRequest, body: bytes | None, received_at: float, exc: StorageError
    ) -> BidResult:
        """No bid for a request of the common case: the match table could not be read."""
        common = self._common
        assert common is not None
        common.count_policy(common.personalise_key)
        return self._answered(request, body, received_at, _read_failed(exc, common.personalise))

    def _common_answer(
        self,
        request: BidRequest,
        body: bytes | None,
        received_at: float,
        gid: str,
        entry: MatchEntry | None,
    ) -> BidResult:
        """:meth:`_bid` for a request :meth:`_common_gid` accepted, flat, from the gid's entry
        (read under the store's own deadline, or within the turn of the event loop where the
        store has batched reads, either ending before the request's budget): the
        same answer, the same counts and the same bid log (tests/buyer/test_buyer_common_bid.py).
        The policy's decisions for a request without signals were asked once
        (``_CommonCase``) and are counted here; the keys counted are made once, and a
        request's are counted in one call each for the policy and the stats
        (``_COMMON_KEYS``)."""
        common = self._common
        assert common is not None
        matched = entry is not None
        decision = decide_match_tag(entry, self._clock(), self.settings.stale_after_seconds)
        serve = decision.serve
        if serve:
            common.count_policy_each(common.personalise_and_sync_keys)
            if not common.sync.allowed:
                decision, serve = PRIVACY_DECISION, False
        else:
            common.count_policy(common.personalise_key)
        imp = request.imp[0]
        blocked = frozenset(request.badv) if request.badv else _NONE_BLOCKED
        choice = choose(self.campaigns, imp, matched=matched, blocked=blocked)
        if choice is None:
            result = _NO_CAMPAIGN if matched else _UNMATCHED
        else:
            wins, auction, impid = self._win_urls, request.id, imp.id
            nurl = None if wins is None else wins.nurl(auction, impid, received_at)
            tag = self._tag_html if serve else ""  # no hosted match: the tag is the shared one
            bid = self._bid_for(auction, impid, nurl, choice, tag, matched, serve, None)
            response = BidResponse(id=auction, seatbid=[SeatBid(bid=[bid], seat=common.seat)])
            result = BidResult(response, "bid")
        self.stats.count_each(_COMMON_KEYS[matched, decision.reason, result.outcome])
        self.bid_log.append_later(
            _record,
            request if body is None else body,
            received_at,
            result,
            matched,
            decision,
            common.personalise,
        )
        return result

    async def _bid(self, request: BidRequest, received_at: float) -> _Answer:
        imps = request.imp
        if not imps:
            return _Answer(BidResult(None, "no_imp"))
        cur = request.cur
        if cur and CURRENCY not in cur and CURRENCY not in (c.upper() for c in cur):
            return _Answer(BidResult(None, "currency"))
        budget = self.budget_seconds(request)
        if budget <= 0:
            return _Answer(BidResult(None, "tmax"))
        signals = bid_signals(request)
        privacy = self._policy.decide(Operation.PERSONALISE, signals, self._vendor_id)
        if privacy.allowed:
            raw_user = request.user
            gid = hosted_uid = None
            if raw_user is not None:
                gid = parse_gid(raw_user.id)
                if self.settings.hosted_match:
                    hosted_uid = parse_hosted_uid(raw_user.buyeruid)
            try:
                lookup = await self._deadlines.run(self.table.lookup(gid, hosted_uid), budget)
            except TimeoutError:
                return _Answer(BidResult(None, "timeout"), privacy=privacy)
            except StorageError as exc:
                if not isinstance(exc, StoreUnavailable):  # the guard logs an outage once
                    log.error("match table read failed; no bid: %s", exc)
                return _Answer(BidResult(None, "store_error"), privacy=privacy)
            user = _User.of(gid, hosted_uid, lookup)
            self.stats.add("lookup", "matched" if user.matched else "unmatched")
            decision = decide_match_tag(
                lookup.newest,
                self._clock(),
                self.settings.stale_after_seconds,
                hosted=hosted_uid is not None,
            )
            if (
                decision.serve
                and not self._policy.decide(Operation.SYNC, signals, self._vendor_id).allowed
            ):  # a match tag shares an ID: purpose 1 too (storage), not only 2-4
                decision = PRIVACY_DECISION
        else:
            user, decision = _UNKNOWN, PRIVACY_DECISION
        self.stats.add("matchtag", decision.reason.value)
        blocked = frozenset(request.badv) if request.badv else _NONE_BLOCKED
        matched = user.uid is not None
        bids: list[Bid] = []
        tag: str | None = None
        for imp in imps:
            choice = choose(self.campaigns, imp, matched=matched, blocked=blocked)
            if choice is not None:
                if tag is None:
                    tag = self._tag_for(request, signals is SILENT, user, decision)
                wins = self._win_urls
                nurl = None if wins is None else wins.nurl(request.id, imp.id, received_at)
                refused = None if privacy.allowed else privacy.reason.value
                bids.append(
                    self._bid_for(
                        request.id, imp.id, nurl, choice, tag, matched, decision.serve, refused
                    )
                )
        if not bids:
            if not privacy.allowed:
                outcome = "not_personalised"
            else:
                outcome = "no_campaign" if matched else "unmatched"
            return _Answer(BidResult(None, outcome), user, decision, privacy)
        for _ in bids:
            self.stats.add("auction", "bid")
        seat = SeatBid(bid=bids, seat=self.settings.nid)
        response = BidResponse(id=request.id, seatbid=[seat])
        return _Answer(BidResult(response, "bid"), user, decision, privacy)

    def _tag_for(
        self, request: BidRequest, silent: bool, user: _User, decision: MatchTagDecision
    ) -> str:
        """The match tag's HTML for this request ("" for none). A request with privacy
        signals gets a tag that carries them; one whose signals cannot travel in a URL gets
        none."""
        if silent or not decision.serve:
            return self.match_tag_html(user, decision)
        extras = bid_privacy_params(request)
        if extras is None:
            return ""
        url = self.match_tag_url(user, decision, extras)
        return "" if url is None else _img(url)

    def _bid_for(
        self,
        request_id: str,
        impid: str,
        nurl: str | None,
        choice: Choice,
        tag: str,
        matched: bool,
        match_tag: bool,
        refused: str | None,
    ) -> Bid:
        """The bid of ``choice``; ``refused``: the privacy policy's reason when it refused to
        personalise (carried in ``ext``)."""
        campaign = choice.campaign
        w, h = choice.size
        adm = self._markup.get((id(campaign), tag))
        ext: dict[str, object] = {"matched": matched, "match_tag": match_tag}
        if refused is not None:
            ext["privacy"] = refused
        return Bid(
            id=bid_id(request_id, impid),
            impid=impid,
            price=choice.price,
            nurl=nurl,
            adm=campaign.render(tag) if adm is None else adm,
            adomain=list(campaign.adomain) or None,
            cid=campaign.id,
            crid=campaign.id,
            w=w or None,
            h=h or None,
            ext=ext,
        )

    def _shared_tag_url(self) -> str:
        """The match tag for every user whose tag does not carry their uid."""
        settings = self.settings
        if settings.hosted_match and settings.public_url:
            return f"{settings.public_url.rstrip('/')}/matchtag?format=redirect"
        return settings.exchange.match_tag_url()

    def match_tag_url(
        self, user: _User, decision: MatchTagDecision, extras: tuple[QueryParam, ...] = ()
    ) -> str | None:
        """The match tag to place in the ad, or None.

        With hosted matching the tag must carry this user's buyer uid in ``google_hm``; when
        the bid request does not reveal it (an unknown user), the tag goes through the buyer's
        own ``/matchtag?format=redirect`` (which reads the buyer cookie) if ``public_url`` is
        configured, and otherwise is a plain ``google_cm`` tag. ``extras`` (the request's
        privacy parameters) are appended to whichever it is.
        """
        if not decision.serve:
            return None
        if self.settings.hosted_match and user.uid is not None:
            return self.settings.exchange.match_tag_url(user.uid, extras)
        if not extras:
            return self._tag_url
        return f"{self._tag_url}&{encode_query(extras)}"

    def match_tag_html(self, user: _User, decision: MatchTagDecision) -> str:
        if not decision.serve:
            return ""
        if self.settings.hosted_match and user.uid is not None:
            return _img(self.settings.exchange.match_tag_url(user.uid))
        return self._tag_html


_NONE_BLOCKED: frozenset[str] = frozenset()


class _CommonCase(msgspec.Struct, frozen=True):
    """What the common case of a bid request needs, prepared once: the policy's answers for a
    request without signals and their count keys, the store's deadline (a request whose budget
    is at least that long needs no limit of its own), and the seat."""

    personalise: Decision
    sync: Decision
    deadline: float
    seat: str
    count_policy: Callable[[tuple[Operation, Reason]], None]  # the policy's counts, one call
    count_policy_each: Callable[[Sequence[tuple[Operation, Reason]]], None]
    personalise_key: tuple[Operation, Reason]
    personalise_and_sync_keys: tuple[tuple[Operation, Reason], ...]  # a request given a tag

    @classmethod
    def of(cls, bidder: Bidder) -> _CommonCase | None:
        """None when the common case does not apply to this buyer: hosted matching, a store
        without a deadline of its own, or a policy that refuses to personalise without
        signals."""
        deadline = getattr(bidder.table.store, "deadline", None)
        if bidder.settings.hosted_match or not isinstance(deadline, float):
            return None
        policy, vendor = bidder._policy, bidder._vendor_id
        personalise = policy.answer(Operation.PERSONALISE, SILENT, vendor)
        if not personalise.allowed:
            return None
        sync = policy.answer(Operation.SYNC, SILENT, vendor)
        return cls(
            personalise,
            sync,
            deadline,
            bidder.settings.nid,
            counter(policy.counts),
            each_counter(policy.counts),
            (Operation.PERSONALISE, personalise.reason),
            ((Operation.PERSONALISE, personalise.reason), (Operation.SYNC, sync.reason)),
        )


_BID_KEYS = {
    outcome: stats_key("bid", outcome)
    for outcome in ("bid", "unmatched", "no_campaign", "store_error", "timeout")
}
_LOOKUP_MATCHED = stats_key("lookup", "matched")
_LOOKUP_UNMATCHED = stats_key("lookup", "unmatched")
_TAG_KEYS = {reason: stats_key("matchtag", reason.value) for reason in TagReason}
_AUCTION_BID = stats_key("auction", "bid")
_COMMON_KEYS = {
    (matched, reason, outcome): (
        _LOOKUP_MATCHED if matched else _LOOKUP_UNMATCHED,
        _TAG_KEYS[reason],
        *((_AUCTION_BID,) if outcome == "bid" else ()),
        _BID_KEYS[outcome],
    )
    for matched in (True, False)
    for reason in TagReason
    for outcome in ("bid", "no_campaign", "unmatched")
}
"""The stats a request of the common case counts: by whether its user matched, the match
tag's reason and the outcome (its look-up, its tag, its bid in the auction, its answer)."""
_NO_CAMPAIGN = BidResult(None, "no_campaign")
_UNMATCHED = BidResult(None, "unmatched")


def _img(url: str) -> str:
    """The match tag as a 1x1 image."""
    return (
        f'<img src="{html.escape(url)}" width="1" height="1" alt="" '
        'style="position:absolute;width:1px;height:1px;border:0">'
    )


def _read_failed(exc: StorageError, privacy: Decision) -> _Answer:
    """No bid: the match table could not be read (logged, unless the guard logs the outage)."""
    if not isinstance(exc, StoreUnavailable):  # the guard logs an outage once
        log.error("match table read failed; no bid: %s", exc)
    return _Answer(BidResult(None, "store_error"), privacy=privacy)


def _record(
    source: BidRequest | bytes,
    received_at: float,
    result: BidResult,
    matched: bool,
    decision: MatchTagDecision | None,
    privacy: Decision | None,
) -> BidRecord:
    """The bid log's record of one answer (``decision``, ``privacy``: None where the request
    ended before they were made)."""
    request = decode_bid_request(source) if isinstance(source, bytes) else source
    bids = [b for seat in result.response.seatbid for b in seat.bid] if result.response else []
    return BidRecord(
        received_at=received_at,
        request_id=request.id,
        outcome=result.outcome,
        matched=matched,
        match_tag=decision.serve if decision is not None else False,
        match_tag_reason=decision.reason.value if decision is not None else None,
        privacy_reason=privacy.reason.value if privacy is not None else None,
        site_domain=request.site.domain if request.site else None,
        site_page=request.site.page if request.site else None,
        app_bundle=request.app.bundle if request.app else None,
        imp_ids=[imp.id for imp in request.imp],
        tmax=request.tmax,
        prices=[b.price for b in bids],
        campaigns=[b.cid for b in bids if b.cid is not None],
    )
