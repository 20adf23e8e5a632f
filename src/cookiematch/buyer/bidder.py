"""The bidder: look the user up, pick campaigns, answer with a bid or no bid, within tmax.

One look-up per request (``MatchTable.lookup``: its reads go out together, one round trip),
bounded by the request's ``tmax`` (or the configured default) minus a safety margin: a
look-up that would take longer is abandoned and the answer is no bid. The ad markup carries
the exchange's match tag when :func:`~cookiematch.buyer.matchtag.decide_match_tag` says the
user needs (re)matching.

Per request, only what depends on it is built: the match tag's HTML and each campaign's markup
with it are rendered once for the tags that do not depend on the user, and the bid log's
record is built when the log is read.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence

import msgspec

from cookiematch.buyer.bidlog import BidLog, BidRecord
from cookiematch.buyer.campaigns import Campaign, Choice, choose
from cookiematch.buyer.deadlines import Deadlines
from cookiematch.buyer.ids import format_uid, parse_gid, parse_hosted_uid
from cookiematch.buyer.matchtable import Lookup, MatchTable
from cookiematch.buyer.matchtag import MatchTagDecision, decide_match_tag
from cookiematch.buyer.model import BuyerSettings
from cookiematch.buyer.stats import BuyerStats
from cookiematch.clock import Clock
from cookiematch.errors import StorageError
from cookiematch.protocol.openrtb import CURRENCY, Bid, BidRequest, BidResponse, SeatBid

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
        clock: Clock,
    ) -> None:
        self.table = table
        self.campaigns = tuple(campaigns)
        self.settings = settings
        self.stats = stats
        self.bid_log = bid_log
        self._clock = clock
        self._deadlines = Deadlines()
        self._tag_url = self._shared_tag_url()
        self._tag_html = _img(self._tag_url)
        self._markup = {
            (id(campaign), tag): campaign.render(tag)
            for campaign in self.campaigns
            for tag in ("", self._tag_html)
        }

    def budget_seconds(self, request: BidRequest) -> float:
        """Time allowed for the look-up: ``tmax`` (or the default) minus the margin."""
        tmax = request.tmax if request.tmax and request.tmax > 0 else self.settings.tmax_ms
        return (tmax - self.settings.tmax_margin_ms) / 1000

    async def bid(self, request: BidRequest) -> BidResult:
        received_at = self._clock()
        result, user, decision = await self._bid(request)
        self.stats.add("bid", result.outcome)
        self.bid_log.append_later(_record, request, received_at, result, user, decision)
        return result

    async def _bid(
        self, request: BidRequest
    ) -> tuple[BidResult, _User | None, MatchTagDecision | None]:
        imps = request.imp
        if not imps:
            return BidResult(None, "no_imp"), None, None
        cur = request.cur
        if cur and CURRENCY not in cur and CURRENCY not in (c.upper() for c in cur):
            return BidResult(None, "currency"), None, None
        budget = self.budget_seconds(request)
        if budget <= 0:
            return BidResult(None, "tmax"), None, None
        raw_user = request.user
        gid = hosted_uid = None
        if raw_user is not None:
            gid = parse_gid(raw_user.id)
            if self.settings.hosted_match:
                hosted_uid = parse_hosted_uid(raw_user.buyeruid)
        try:
            lookup = await self._deadlines.run(self.table.lookup(gid, hosted_uid), budget)
        except TimeoutError:
            return BidResult(None, "timeout"), None, None
        except StorageError as exc:
            log.error("match table read failed; no bid: %s", exc)
            return BidResult(None, "store_error"), None, None
        user = _User.of(gid, hosted_uid, lookup)
        decision = decide_match_tag(
            lookup.newest,
            self._clock(),
            self.settings.stale_after_seconds,
            hosted=hosted_uid is not None,
        )
        self.stats.add("matchtag", decision.reason.value)
        blocked = frozenset(request.badv) if request.badv else _NONE_BLOCKED
        matched = user.uid is not None
        bids: list[Bid] = []
        tag: str | None = None
        for imp in imps:
            choice = choose(self.campaigns, imp, matched=matched, blocked=blocked)
            if choice is not None:
                if tag is None:
                    tag = self.match_tag_html(user, decision)
                bids.append(self._bid_for(request.id, imp.id, choice, tag, user, decision))
        if not bids:
            return BidResult(None, "no_campaign" if matched else "unmatched"), user, decision
        seat = SeatBid(bid=bids, seat=self.settings.nid)
        return BidResult(BidResponse(id=request.id, seatbid=[seat]), "bid"), user, decision

    def _bid_for(
        self,
        request_id: str,
        impid: str,
        choice: Choice,
        tag: str,
        user: _User,
        decision: MatchTagDecision,
    ) -> Bid:
        campaign = choice.campaign
        w, h = choice.size
        adm = self._markup.get((id(campaign), tag))
        return Bid(
            id=f"{request_id}-{impid}",
            impid=impid,
            price=choice.price,
            adm=campaign.render(tag) if adm is None else adm,
            adomain=list(campaign.adomain) or None,
            cid=campaign.id,
            crid=campaign.id,
            w=w or None,
            h=h or None,
            ext={"matched": user.matched, "match_tag": decision.serve},
        )

    def _shared_tag_url(self) -> str:
        """The match tag for every user whose tag does not carry their uid."""
        settings = self.settings
        if settings.hosted_match and settings.public_url:
            return f"{settings.public_url.rstrip('/')}/matchtag?format=redirect"
        return settings.exchange.match_tag_url()

    def match_tag_url(self, user: _User, decision: MatchTagDecision) -> str | None:
        """The match tag to place in the ad, or None.

        With hosted matching the tag must carry this user's buyer uid in ``google_hm``; when
        the bid request does not reveal it (an unknown user), the tag goes through the buyer's
        own ``/matchtag?format=redirect`` (which reads the buyer cookie) if ``public_url`` is
        configured, and otherwise is a plain ``google_cm`` tag.
        """
        if not decision.serve:
            return None
        if self.settings.hosted_match and user.uid is not None:
            return self.settings.exchange.match_tag_url(user.uid)
        return self._tag_url

    def match_tag_html(self, user: _User, decision: MatchTagDecision) -> str:
        if not decision.serve:
            return ""
        if self.settings.hosted_match and user.uid is not None:
            return _img(self.settings.exchange.match_tag_url(user.uid))
        return self._tag_html


_NONE_BLOCKED: frozenset[str] = frozenset()


def _img(url: str) -> str:
    """The match tag as a 1x1 image."""
    return (
        f'<img src="{html.escape(url)}" width="1" height="1" alt="" '
        'style="position:absolute;width:1px;height:1px;border:0">'
    )


def _record(
    request: BidRequest,
    received_at: float,
    result: BidResult,
    user: _User | None,
    decision: MatchTagDecision | None,
) -> BidRecord:
    raw_user = request.user
    bids = [b for seat in result.response.seatbid for b in seat.bid] if result.response else []
    uid = user.uid if user is not None else None
    return BidRecord(
        received_at=received_at,
        request_id=request.id,
        outcome=result.outcome,
        user_id=raw_user.id if raw_user else None,
        buyeruid=raw_user.buyeruid if raw_user else None,
        user_ext=raw_user.ext if raw_user else None,
        matched=user.matched if user is not None else False,
        buyer_uid=format_uid(uid) if uid is not None else None,
        match_tag=decision.serve if decision is not None else False,
        match_tag_reason=decision.reason.value if decision is not None else None,
        site_domain=request.site.domain if request.site else None,
        site_page=request.site.page if request.site else None,
        app_bundle=request.app.bundle if request.app else None,
        imp_ids=[imp.id for imp in request.imp],
        tmax=request.tmax,
        prices=[b.price for b in bids],
        campaigns=[b.cid for b in bids if b.cid is not None],
    )
