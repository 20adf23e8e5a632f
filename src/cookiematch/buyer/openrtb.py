"""The subset of OpenRTB 2.6 the bidder reads and writes, as msgspec Structs.

Decoding is lenient: unknown fields (and every object the bidder does not use: video, native,
device, regs...) are ignored, and every field the bidder reads has a default. Only a field
present with the wrong JSON type (``"imp": 3``) or malformed JSON fails to decode.
"""

from __future__ import annotations

from typing import Any

import msgspec

from cookiematch.errors import BidRequestError


class _In(msgspec.Struct, frozen=True):
    """Base of the request objects: unknown fields are ignored."""


class Format(_In, frozen=True):
    w: int | None = None
    h: int | None = None


class Banner(_In, frozen=True):
    w: int | None = None
    h: int | None = None
    format: list[Format] | None = None

    def sizes(self) -> list[tuple[int, int]]:
        sizes = [(f.w, f.h) for f in self.format or () if f.w is not None and f.h is not None]
        if self.w is not None and self.h is not None:
            sizes.insert(0, (self.w, self.h))
        return sizes


class Pmp(_In, frozen=True):
    private_auction: int = 0


class Imp(_In, frozen=True):
    id: str
    banner: Banner | None = None
    bidfloor: float = 0.0
    bidfloorcur: str = "USD"
    pmp: Pmp | None = None
    tagid: str | None = None


class Publisher(_In, frozen=True):
    id: str | None = None
    name: str | None = None


class Site(_In, frozen=True):
    id: str | None = None
    domain: str | None = None
    page: str | None = None
    publisher: Publisher | None = None


class App(_In, frozen=True):
    id: str | None = None
    bundle: str | None = None
    publisher: Publisher | None = None


class User(_In, frozen=True):
    id: str | None = None
    buyeruid: str | None = None
    ext: dict[str, Any] | None = None


class BidRequest(_In, frozen=True):
    id: str
    imp: list[Imp] = []
    site: Site | None = None
    app: App | None = None
    user: User | None = None
    tmax: int | None = None
    cur: list[str] | None = None
    bcat: list[str] | None = None
    badv: list[str] | None = None
    test: int = 0


_decoder = msgspec.json.Decoder(BidRequest)


def decode_bid_request(body: bytes) -> BidRequest:
    """Decode a request body; raise BidRequestError (a 400) if it is not a bid request."""
    try:
        return _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BidRequestError(f"not an OpenRTB bid request: {exc}") from None


class _Out(msgspec.Struct, frozen=True, omit_defaults=True):
    """Base of the response objects: unset optional fields are left out."""


class Bid(_Out, frozen=True):
    id: str
    impid: str
    price: float
    adm: str | None = None
    adomain: list[str] | None = None
    cid: str | None = None
    crid: str | None = None
    w: int | None = None
    h: int | None = None
    ext: dict[str, Any] | None = None


class SeatBid(_Out, frozen=True):
    bid: list[Bid]
    seat: str | None = None


class BidResponse(_Out, frozen=True):
    id: str
    seatbid: list[SeatBid] = []
    cur: str = "USD"


_encoder = msgspec.json.Encoder()


def encode_bid_response(response: BidResponse) -> bytes:
    """The response's JSON (what ``msgspec.json.encode`` gives, from one encoder)."""
    return _encoder.encode(response)
