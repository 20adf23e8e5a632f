"""The OpenRTB 2.6 wire model: the bid requests and bid responses both roles exchange.

The exchange encodes a ``BidRequest`` for each buyer and decodes its ``BidResponse``; the
buyer decodes the ``BidRequest`` and encodes its ``BidResponse``. Only the fields cookiematch
sets or reads are declared (OpenRTB is extensible):

- decoding ignores unknown fields and objects (video, native...); a declared field
  present with the wrong JSON type, malformed JSON, or a missing required field (``id``; a
  bid's ``id``, ``impid``, ``price``; a seat's ``bid``) fails: ``BidRequestError`` for a
  request, ``InvalidBidResponse`` for a response;
- encoding leaves out every field at its default and writes keys in declaration order (the
  bytes each role sends are pinned by tests: reordering fields changes them).

What the exchange adds to OpenRTB rides in the standard fields: ``user.id`` is the buyer's
gid, ``user.buyeruid`` the buyer's hosted match data (unpadded URL-safe base64), and
``user.ext`` holds ``cookie_version`` (the gid's key version) and ``cookie_age_seconds``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from cookiematch.errors import BidRequestError, InvalidBidResponse
from cookiematch.protocol.json_errors import JSON_ERRORS, describe

CURRENCY = "USD"
"""OpenRTB's default currency, the only one cookiematch bids and prices in."""


class _Object(msgspec.Struct, omit_defaults=True, frozen=True):
    """Base of the OpenRTB objects: unknown fields are ignored, defaults are not encoded."""


# -- bid request -------------------------------------------------------------------------


class Format(_Object, frozen=True):
    w: int | None = None
    h: int | None = None


class Banner(_Object, frozen=True):
    w: int | None = None
    h: int | None = None
    format: list[Format] | None = None

    def sizes(self) -> list[tuple[int, int]]:
        """The sizes the banner takes: ``w`` x ``h`` first, then each complete ``format``."""
        sizes = [(f.w, f.h) for f in self.format or () if f.w is not None and f.h is not None]
        if self.w is not None and self.h is not None:
            sizes.insert(0, (self.w, self.h))
        return sizes


class Pmp(_Object, frozen=True):
    private_auction: int = 0  # 1: only the deals' bidders may bid


class Imp(_Object, frozen=True):
    id: str
    banner: Banner | None = None
    pmp: Pmp | None = None
    tagid: str | None = None
    bidfloor: float = 0.0
    bidfloorcur: str = CURRENCY
    secure: int | None = None  # 1: the creative must be served over https


class Publisher(_Object, frozen=True):
    id: str | None = None
    name: str | None = None


class Site(_Object, frozen=True):
    id: str | None = None
    domain: str | None = None
    publisher: Publisher | None = None
    page: str | None = None


class App(_Object, frozen=True):
    id: str | None = None
    bundle: str | None = None
    publisher: Publisher | None = None


class Device(_Object, frozen=True):
    ua: str | None = None
    ip: str | None = None


class User(_Object, frozen=True):
    id: str | None = None  # from the exchange: the buyer's gid
    buyeruid: str | None = None  # from the exchange: hosted match data, unpadded base64url
    consent: str | None = None  # the TCF TC string (OpenRTB 2.6)
    ext: dict[str, Any] | None = None  # from the exchange: cookie_version, cookie_age_seconds;
    # OpenRTB 2.5: consent


class Regs(_Object, frozen=True):
    """Regulations in force for the request (OpenRTB 2.6 ``regs``)."""

    coppa: int | None = None
    gdpr: int | None = None  # 1: GDPR applies, 0: it does not
    us_privacy: str | None = None  # the IAB US Privacy string
    gpp: str | None = None  # the GPP string
    gpp_sid: list[int] | None = None  # the GPP sections in force
    ext: dict[str, Any] | None = None  # OpenRTB 2.5: gdpr, us_privacy (and gpp, gpp_sid)


class BidRequest(_Object, frozen=True):
    id: str
    imp: list[Imp] = []
    site: Site | None = None
    app: App | None = None
    device: Device | None = None
    user: User | None = None
    regs: Regs | None = None
    test: int = 0
    tmax: int | None = None  # milliseconds
    at: int | None = None  # 1: first price; 2 (absent): second price plus
    cur: list[str] | None = None
    bcat: list[str] | None = None
    badv: list[str] | None = None  # blocked advertiser domains


# -- bid response ------------------------------------------------------------------------


class Bid(_Object, frozen=True):
    id: str
    impid: str
    price: float  # CPM
    nurl: str | None = None  # win notice
    adm: str | None = None  # the markup
    adomain: list[str] | None = None
    cid: str | None = None
    crid: str | None = None
    w: int | None = None
    h: int | None = None
    ext: dict[str, Any] | None = None  # from cookiematch's bidder: matched, match_tag


class SeatBid(_Object, frozen=True):
    bid: list[Bid]
    seat: str | None = None


class BidResponse(_Object, frozen=True):
    id: str  # echoes the request's
    seatbid: list[SeatBid] = []
    bidid: str | None = None
    cur: str | None = None  # absent: USD
    nbr: int | None = None  # no-bid reason


# -- encoding and decoding ---------------------------------------------------------------

_encoder = msgspec.json.Encoder()
_request_decoder = msgspec.json.Decoder(BidRequest)
_response_decoder = msgspec.json.Decoder(BidResponse)


def encode_bid_request(request: BidRequest) -> bytes:
    return _encoder.encode(request)


def decode_bid_request(body: bytes) -> BidRequest:
    """Decode a request body; raise BidRequestError (a 400) if it is not a bid request."""
    try:
        return _request_decoder.decode(body)
    except JSON_ERRORS as exc:
        raise BidRequestError(f"not an OpenRTB bid request: {describe(exc)}") from None


def encode_bid_response(response: BidResponse) -> bytes:
    return _encoder.encode(response)


def decode_bid_response(body: bytes) -> BidResponse:
    """Decode a response body; raise InvalidBidResponse if it is not a bid response."""
    try:
        return _response_decoder.decode(body)
    except JSON_ERRORS as exc:
        raise InvalidBidResponse(f"not an OpenRTB bid response: {describe(exc)}") from None
