"""The bids the exchange accepts: the IAB's OpenRTB 2.6 example responses and malformed ones."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cookiematch.errors import InvalidBidResponse
from cookiematch.exchange.bids import parse_response
from cookiematch.protocol.openrtb import (
    CURRENCY,
    Banner,
    BidRequest,
    Device,
    Imp,
    Publisher,
    Site,
    User,
)

# The IAB examples live beside the repository (../shared), as docs/DESIGN.md says.
from support.openrtb import EXAMPLES


def request(auction_id: str = "a1", imp_id: str = "1", floor: float = 0.0) -> BidRequest:
    return BidRequest(
        id=auction_id,
        imp=[Imp(id=imp_id, banner=Banner(w=300, h=250), bidfloor=floor)],
        site=Site(id="news", publisher=Publisher(id="news")),
        device=Device(),
        user=User(),
        tmax=120,
        at=1,
        cur=[CURRENCY],
    )


def response(**bid: Any) -> bytes:
    one = {"id": "b", "impid": "1", "price": 1.5, "adm": "<i>x</i>", **bid}
    return json.dumps({"id": "a1", "seatbid": [{"seat": "s", "bid": [one]}]}).encode()


@pytest.mark.parametrize(
    "name",
    ["response-2-vast-xml-document-returned-inline.json",
     "response-4-native-markup-returned-inline.json"],
)  # fmt: skip
def test_iab_examples_with_inline_markup_parse(name: str) -> None:
    body = (EXAMPLES / name).read_bytes()
    data = json.loads(body)
    first = data["seatbid"][0]["bid"][0]
    bids = parse_response("dsp", body, request(data["id"], first["impid"]))
    assert [(b.nid, b.price, b.adm) for b in bids] == [("dsp", first["price"], first["adm"])]


@pytest.mark.parametrize(
    "name",
    ["response-1-ad-served-on-win-notice.json",
     "response-3-direct-deal-ad-served-on-win-notice.json"],
)  # fmt: skip
def test_iab_examples_served_on_win_notice_are_refused(name: str) -> None:
    """cookiematch needs the markup in the response (no second round trip in the slot)."""
    body = (EXAMPLES / name).read_bytes()
    data = json.loads(body)
    imp_id = data["seatbid"][0]["bid"][0]["impid"]
    with pytest.raises(InvalidBidResponse, match="no adm"):
        parse_response("dsp", body, request(data["id"], imp_id))


def test_empty_seatbid_is_no_bid() -> None:
    assert parse_response("dsp", b'{"id": "a1", "seatbid": []}', request()) == []
    assert parse_response("dsp", b'{"id": "a1", "nbr": 2}', request()) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not an OpenRTB"),
        (b"[]", "not an OpenRTB"),
        (b'{"seatbid": []}', "not an OpenRTB"),
        (b'{"id": "zz", "seatbid": []}', "echo"),
        (response(impid="2"), "unknown impid"),
        (response(price=0), "price"),
        (response(price=-1), "price"),
        (response(price="1.5"), "not an OpenRTB"),
        (response(adm=""), "no adm"),
        (response(adm="x" * (64 * 1024 + 1)), "no adm"),
        (json.dumps({"id": "a1", "cur": "EUR", "seatbid": []}).encode(), "currency"),
    ],
)
def test_malformed_responses(body: bytes, message: str) -> None:
    with pytest.raises(InvalidBidResponse, match=message):
        parse_response("dsp", body, request())


def test_floor_is_enforced() -> None:
    with pytest.raises(InvalidBidResponse, match="floor"):
        parse_response("dsp", response(price=0.5), request(floor=1.0))
    assert parse_response("dsp", response(price=1.0), request(floor=1.0))[0].price == 1.0


def test_macros_in_adm_and_nurl() -> None:
    body = response(
        adm="<img src='https://x/i?p=${AUCTION_PRICE}&a=${AUCTION_ID}&s=${AUCTION_SEAT_ID}'>",
        nurl="https://x/win?p=${AUCTION_PRICE}&b=${AUCTION_BID_ID}",
    )
    [bid] = parse_response("dsp", body, request())
    assert bid.adm == "<img src='https://x/i?p=1.5&a=a1&s=s'>"
    assert bid.nurl == "https://x/win?p=1.5&b=b"
