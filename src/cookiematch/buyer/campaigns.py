"""Campaign rules: which campaign bids on an impression, and at what price.

A campaign bids on banner impressions only (its creative is HTML). ``audience = "matched"``
(retargeting) bids ``matched_bid_price`` for users the buyer knows and nothing for unknown
ones; ``audience = "any"`` bids ``bid_price`` for anyone and ``matched_bid_price`` (when set)
for known users. The best price at or above the floor wins; ties go to the earlier campaign.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import msgspec

from cookiematch.protocol.openrtb import CURRENCY, Imp

MATCH_TAG_MACRO = "${MATCH_TAG}"


class Audience(enum.Enum):
    MATCHED = "matched"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    adm: str  # HTML; ${MATCH_TAG} is replaced by the match tag (appended when absent)
    audience: Audience = Audience.ANY
    bid_price: float = 0.0  # CPM in USD, for users the buyer does not know
    matched_bid_price: float | None = None  # for known users; None: bid_price
    adomain: tuple[str, ...] = ()
    w: int | None = None  # creative size; None fits any banner
    h: int | None = None

    def price(self, matched: bool) -> float | None:
        """The CPM this campaign offers for a (un)matched user, or None to not bid."""
        if matched:
            return self.matched_bid_price if self.matched_bid_price is not None else self.bid_price
        if self.audience is Audience.MATCHED:
            return None
        return self.bid_price

    def size_for(self, imp: Imp) -> tuple[int, int] | None:
        """The banner size this campaign's creative takes in ``imp``, or None if it does not fit.

        ``(0, 0)`` when the campaign has no size and the banner gives none.
        """
        if imp.banner is None:
            return None
        return self.size_in(imp.banner.sizes())

    def size_in(self, sizes: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
        """:meth:`size_for` given the banner's sizes (``Banner.sizes()``)."""
        if self.w is None or self.h is None:
            return sizes[0] if sizes else (0, 0)
        return (self.w, self.h) if (self.w, self.h) in sizes else None

    def render(self, match_tag: str) -> str:
        if MATCH_TAG_MACRO in self.adm:
            return self.adm.replace(MATCH_TAG_MACRO, match_tag)
        return self.adm + match_tag


class Choice(msgspec.Struct, frozen=True):
    campaign: Campaign
    price: float
    size: tuple[int, int]


def choose(
    campaigns: Sequence[Campaign], imp: Imp, *, matched: bool, blocked: Collection[str] = ()
) -> Choice | None:
    """The best campaign for ``imp``, or None. Private auctions (deals only) are skipped:
    this buyer has no deals. A campaign whose advertiser domain is in ``blocked`` is skipped."""
    if imp.pmp is not None and imp.pmp.private_auction:
        return None
    currency = imp.bidfloorcur
    if currency != CURRENCY and currency.upper() != CURRENCY:
        return None
    if imp.banner is None:  # no campaign fits
        return None
    sizes = imp.banner.sizes()
    floor = imp.bidfloor
    best: Choice | None = None
    for campaign in campaigns:
        price = campaign.price(matched)
        if price is None or price <= 0 or price < floor:
            continue
        if best is not None and price <= best.price:  # ties go to the earlier campaign
            continue
        if blocked and any(domain in blocked for domain in campaign.adomain):
            continue
        size = campaign.size_in(sizes)
        if size is not None:
            best = Choice(campaign, price, size)
    return best
