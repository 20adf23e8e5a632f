"""The bids the exchange accepts from a buyer's OpenRTB bid response.

A response is *valid* when it decodes (``protocol.openrtb``), its ``id`` echoes the request's,
its currency is USD, and each bid names our impression, has a finite price at or above the
floor and a non-empty ``adm`` of at most 64 KiB; anything else raises InvalidBidResponse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cookiematch.errors import InvalidBidResponse
from cookiematch.protocol.openrtb import CURRENCY, Bid, BidRequest, decode_bid_response

MAX_ADM_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ValidBid:
    """One acceptable bid of one buyer, with the macros of its markup already expanded."""

    nid: str
    price: float
    adm: str
    bid_id: str
    seat: str | None
    nurl: str | None
    crid: str | None = None


def parse_response(nid: str, body: bytes, request: BidRequest) -> list[ValidBid]:
    """The valid bids of a 200 response; raise InvalidBidResponse for anything malformed."""
    response = decode_bid_response(body)
    if response.id != request.id:
        raise InvalidBidResponse("bid response id does not echo the request id")
    if response.cur is not None and response.cur != CURRENCY:
        raise InvalidBidResponse(f"currency {response.cur!r} is not {CURRENCY}")
    imps = {imp.id: imp for imp in request.imp}
    bids: list[ValidBid] = []
    for seatbid in response.seatbid:
        for bid in seatbid.bid:
            imp = imps.get(bid.impid)
            if imp is None:
                raise InvalidBidResponse(f"bid {bid.id!r} names unknown impid {bid.impid!r}")
            if not math.isfinite(bid.price) or bid.price <= 0:
                raise InvalidBidResponse(f"bid {bid.id!r} has price {bid.price!r}")
            if bid.price < imp.bidfloor:
                raise InvalidBidResponse(f"bid {bid.id!r} is below the floor")
            if not bid.adm or len(bid.adm.encode()) > MAX_ADM_BYTES:
                raise InvalidBidResponse(f"bid {bid.id!r} has no adm or one over 64 KiB")
            macros = _macros(request, bid, seatbid.seat)
            bids.append(
                ValidBid(
                    nid=nid,
                    price=bid.price,
                    adm=expand_macros(bid.adm, macros),
                    bid_id=bid.id,
                    seat=seatbid.seat,
                    nurl=expand_macros(bid.nurl, macros) if bid.nurl else None,
                    crid=bid.crid,
                )
            )
    return bids


def _macros(request: BidRequest, bid: Bid, seat: str | None) -> dict[str, str]:
    return {
        "${AUCTION_ID}": request.id,
        "${AUCTION_BID_ID}": bid.id,
        "${AUCTION_IMP_ID}": bid.impid,
        "${AUCTION_SEAT_ID}": seat or "",
        "${AUCTION_AD_ID}": bid.crid or "",
        "${AUCTION_PRICE}": f"{bid.price:.6g}",  # first price: the clearing price is the bid
        "${AUCTION_CURRENCY}": CURRENCY,
    }


def expand_macros(text: str, macros: dict[str, str]) -> str:
    """OpenRTB substitution macros (``${AUCTION_PRICE}``...) in markup or a win-notice URL."""
    if "${" not in text:
        return text
    for name, value in macros.items():
        text = text.replace(name, value)
    return text
