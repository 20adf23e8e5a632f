"""The OpenRTB 2.6 subset the exchange speaks: bid requests out, bid responses in.

Only the fields cookiematch sets or reads are declared; unknown response fields are ignored
(OpenRTB is extensible). A response is *valid* when it is JSON of the declared shape, its
``id`` echoes the request's, and each bid names our impression, has a finite price at or
above the floor and a non-empty ``adm``; anything else raises InvalidBidResponse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgspec

from cookiematch.errors import ProtocolError

MAX_ADM_BYTES = 64 * 1024
CURRENCY = "USD"


class InvalidBidResponse(ProtocolError):
    """A bid response that is not JSON, not OpenRTB, or bids on something we did not offer."""


class _Struct(msgspec.Struct, omit_defaults=True, frozen=True):
    """Base of the wire shapes: absent optional fields are not encoded."""


class Banner(_Struct, frozen=True):
    w: int
    h: int


class Imp(_Struct, frozen=True):
    id: str
    banner: Banner
    tagid: str | None = None
    bidfloor: float | None = None
    bidfloorcur: str | None = None
    secure: int | None = None


class SitePublisher(_Struct, frozen=True):
    id: str


class Site(_Struct, frozen=True):
    id: str
    publisher: SitePublisher
    page: str | None = None


class Device(_Struct, frozen=True):
    ua: str | None = None
    ip: str | None = None


class UserExt(_Struct, frozen=True):
    cookie_version: int | None = None
    cookie_age_seconds: int | None = None


class User(_Struct, frozen=True):
    id: str | None = None  # the buyer's gid
    buyeruid: str | None = None  # hosted match data, unpadded URL-safe base64
    ext: UserExt | None = None


class BidRequest(_Struct, frozen=True):
    id: str
    imp: list[Imp]
    site: Site
    device: Device
    user: User
    tmax: int
    at: int  # 1: first price
    cur: list[str]


class Bid(msgspec.Struct, frozen=True):
    id: str
    impid: str
    price: float
    adm: str | None = None
    nurl: str | None = None
    adomain: list[str] | None = None
    crid: str | None = None


class SeatBid(msgspec.Struct, frozen=True):
    bid: list[Bid]
    seat: str | None = None


class BidResponse(msgspec.Struct, frozen=True):
    id: str
    seatbid: list[SeatBid] = msgspec.field(default_factory=list)
    bidid: str | None = None
    cur: str | None = None
    nbr: int | None = None


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


_DECODER = msgspec.json.Decoder(BidResponse)
_ENCODER = msgspec.json.Encoder()


def encode_request(request: BidRequest) -> bytes:
    return _ENCODER.encode(request)


def decode_request(body: bytes) -> dict[str, Any]:
    """The request as plain JSON values (tests, bidders)."""
    decoded: dict[str, Any] = msgspec.json.decode(body)
    return decoded


def parse_response(nid: str, body: bytes, request: BidRequest) -> list[ValidBid]:
    """The valid bids of a 200 response; raise InvalidBidResponse for anything malformed."""
    try:
        response = _DECODER.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise InvalidBidResponse(f"not an OpenRTB bid response: {exc}") from None
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
            if imp.bidfloor is not None and bid.price < imp.bidfloor:
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
