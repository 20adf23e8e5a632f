"""The OpenRTB 2.6 wire model: the IAB's examples, the bytes each role sends, malformed input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.errors import BidRequestError, InvalidBidResponse
from cookiematch.protocol.openrtb import (
    Banner,
    Bid,
    BidRequest,
    BidResponse,
    Device,
    Format,
    Imp,
    Publisher,
    SeatBid,
    Site,
    User,
    decode_bid_request,
    decode_bid_response,
    encode_bid_request,
    encode_bid_response,
)

# The IAB's section 6 examples, copied unchanged from the project's shared inputs.
from support.openrtb import requests, responses


def assert_read_from(decoded: Any, original: Any, where: str = "$") -> None:
    """Every value the model decoded is the example's value at the same place."""
    if isinstance(decoded, dict):
        assert isinstance(original, dict), where
        for key, value in decoded.items():
            assert key in original, f"{where}.{key} is not in the example"
            assert_read_from(value, original[key], f"{where}.{key}")
    elif isinstance(decoded, list):
        assert isinstance(original, list) and len(decoded) == len(original), where
        for i, (value, source) in enumerate(zip(decoded, original, strict=True)):
            assert_read_from(value, source, f"{where}[{i}]")
    else:
        same_type = type(decoded) is type(original) or type(decoded) is float  # 3 -> 3.0
        assert decoded == original and same_type, f"{where}: {decoded!r} != {original!r}"


@pytest.mark.parametrize("path", requests(), ids=lambda p: p.stem)
def test_every_iab_request_decodes_and_round_trips(path: Path) -> None:
    request = decode_bid_request(path.read_bytes())
    assert_read_from(msgspec.to_builtins(request), json.loads(path.read_bytes()))
    assert decode_bid_request(encode_bid_request(request)) == request


@pytest.mark.parametrize("path", responses(), ids=lambda p: p.stem)
def test_every_iab_response_decodes_and_round_trips(path: Path) -> None:
    response = decode_bid_response(path.read_bytes())
    assert_read_from(msgspec.to_builtins(response), json.loads(path.read_bytes()))
    assert decode_bid_response(encode_bid_response(response)) == response


def test_iab_examples_are_all_here() -> None:
    assert len(requests()) == 5 and len(responses()) == 4


# What the model reads from each example request: id, each imp's (id, sizes, floor, private
# auction), at, tmax, user (id, buyeruid), device ua, site page / app bundle, badv.
IAB_REQUESTS = {
    "request-1-simple-banner": (
        "80ce30c53c16e6ede735f123ef6e32361bfc7b22",
        [("1", [(300, 250)], 0.03, False)],
        1, None, ("55816b39711f9b5acf3b90e313ed29e51665623f", None),
        None, "http://www.foobar.com/1234.html", None,
    ),
    "request-2-expandable-creative": (
        "123456789316e6ede735f123ef6e32361bfc7b22",
        [("1", [(300, 250)], 0.03, False)],
        2, None, ("55816b39711f9b5acf3b90e313ed29e51665623f", "545678765467876567898765678987654"),
        None, "http://www.foobar.com/1234.html", None,
    ),
    "request-3-mobile": (
        "IxexyLDIIk",
        [("1", [(728, 90)], 0.5, False)],
        2, None, ("ffffffd5135596709273b3a1a07e466ea2bf4fff", None),
        "Mozilla/5.0 (iPhone; CPU iPhone OS 6_1 like Mac OS X) AppleWebKit/534.46 (KHTML, like "
        "Gecko) Version/5.1 Mobile/9A334 Safari/7534.48.3", "12345",
        ["apple.com", "go-text.me", "heywire.com"],
    ),
    "request-4-video": (
        "1234567893",
        [("1", None, 0.03, False)],
        2, 120, ("456789876567897654678987656789", "545678765467876567898765678987654"),
        "Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.6; en-US; rv:1.9.2.16) Gecko/20110319 "
        "Firefox/3.6.16", "http://siteabcd.com/page.htm", None,
    ),
    "request-5-pmp-with-direct-deal": (
        "80ce30c53c16e6ede735f123ef6e32361bfc7b22",
        [("1", [(300, 250)], 0.03, True)],
        1, None, ("55816b39711f9b5acf3b90e313ed29e51665623f", None),
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_6_8) AppleWebKit/537.13 (KHTML, like Gecko) "
        "Version/5.1.7 Safari/534.57.2", "http://www.foobar.com/1234.html", None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("path", requests(), ids=lambda p: p.stem)
def test_iab_requests_read(path: Path) -> None:
    r = decode_bid_request(path.read_bytes())
    imps = [
        (
            imp.id,
            imp.banner.sizes() if imp.banner else None,
            imp.bidfloor,
            bool(imp.pmp and imp.pmp.private_auction),
        )
        for imp in r.imp
    ]
    assert all(imp.bidfloorcur == "USD" for imp in r.imp)
    user = (r.user.id, r.user.buyeruid) if r.user else None
    ua = r.device.ua if r.device else None
    where = r.site.page if r.site else r.app.bundle if r.app else None
    read = (r.id, imps, r.at, r.tmax, user, ua, where, r.badv)
    assert read == IAB_REQUESTS[path.stem]


# What the model reads from each example response: id, cur, and each bid's (seat, id, impid,
# price, the markup's first five characters, win notice).
IAB_RESPONSES = {
    "response-1-ad-served-on-win-notice": (
        "1234567890", "USD",
        [("512", "1", "102", 9.43, None, "http://adserver.com/winnotice?impid=102")],
    ),
    "response-2-vast-xml-document-returned-inline": (
        "123", None, [(None, "12345", "2", 3.0, "<?xml", "http://example.com/winnoticeurl")],
    ),
    "response-3-direct-deal-ad-served-on-win-notice": (
        "1234567890", "USD",
        [("512", "1", "102", 5.0, None, "http: //adserver.com/winnotice?impid=102")],
    ),
    "response-4-native-markup-returned-inline": (
        "123", None, [(None, "12345", "2", 3.0, '{"nat', "http://example.com/winnoticeurl")],
    ),
}  # fmt: skip


@pytest.mark.parametrize("path", responses(), ids=lambda p: p.stem)
def test_iab_responses_read(path: Path) -> None:
    r = decode_bid_response(path.read_bytes())
    bids = [
        (seat.seat, b.id, b.impid, b.price, b.adm[:5] if b.adm else None, b.nurl)
        for seat in r.seatbid
        for b in seat.bid
    ]
    assert (r.id, r.cur, bids) == IAB_RESPONSES[path.stem]


def exchange_request(user: User) -> BidRequest:
    """A bid request as the exchange builds one (exchange/ad_service.py)."""
    return BidRequest(
        id="auction-1",
        imp=[Imp(id="1", tagid="top", banner=Banner(w=728, h=90), secure=1)],
        site=Site(id="news", publisher=Publisher(id="news"), page="https://news.example/a?b=c"),
        device=Device(ua='Mozilla/5.0 "x"', ip="203.0.113.9"),
        user=user,
        tmax=100,
        at=1,
        cur=["USD"],
    )


def test_exchange_request_bytes() -> None:
    """Absent fields are left out; keys come in declaration order; the cookie data rides in
    user.id (gid), user.buyeruid (hosted match data) and user.ext."""
    user = User(
        id="Mk_3cMwUaIL80-uFpCTq5If7eRw",
        buyeruid="AQL_",
        ext={"cookie_version": 1, "cookie_age_seconds": 3600},
    )
    assert encode_bid_request(exchange_request(user)) == (
        b'{"id":"auction-1","imp":[{"id":"1","banner":{"w":728,"h":90},"tagid":"top",'
        b'"secure":1}],"site":{"id":"news","publisher":{"id":"news"},'
        b'"page":"https://news.example/a?b=c"},"device":{"ua":"Mozilla/5.0 \\"x\\"",'
        b'"ip":"203.0.113.9"},"user":{"id":"Mk_3cMwUaIL80-uFpCTq5If7eRw","buyeruid":"AQL_",'
        b'"ext":{"cookie_version":1,"cookie_age_seconds":3600}},"tmax":100,"at":1,"cur":["USD"]}'
    )
    anonymous = BidRequest(
        id="a1",
        imp=[Imp(id="1", tagid="side", banner=Banner(w=300, h=250), secure=0)],
        site=Site(id="news", publisher=Publisher(id="news")),
        device=Device(),
        user=User(),
        tmax=120,
        at=1,
        cur=["USD"],
    )
    assert encode_bid_request(anonymous) == (
        b'{"id":"a1","imp":[{"id":"1","banner":{"w":300,"h":250},"tagid":"side","secure":0}],'
        b'"site":{"id":"news","publisher":{"id":"news"}},"device":{},"user":{},"tmax":120,'
        b'"at":1,"cur":["USD"]}'
    )


def test_bidder_response_bytes() -> None:
    """A response as the bidder builds one (buyer/bidder.py): ``cur`` (USD) is left out."""
    bid = Bid(
        id="r-1",
        impid="1",
        price=4.0,
        adm="<p>again</p>",
        adomain=["a.example"],
        cid="retarget",
        crid="retarget",
        w=300,
        h=250,
        ext={"matched": True, "match_tag": False},
    )
    response = BidResponse(id="r", seatbid=[SeatBid(bid=[bid], seat="dsp")])
    assert encode_bid_response(response) == (
        b'{"id":"r","seatbid":[{"bid":[{"id":"r-1","impid":"1","price":4.0,"adm":"<p>again</p>",'
        b'"adomain":["a.example"],"cid":"retarget","crid":"retarget","w":300,"h":250,'
        b'"ext":{"matched":true,"match_tag":false}}],"seat":"dsp"}]}'
    )


def test_decoding_is_lenient_about_what_it_does_not_declare() -> None:
    request = decode_bid_request(
        b'{"id": "x", "future": {"a": 1}, "imp": [{"id": "1", "native": {}, "banner":'
        b' {"format": [{"w": 728, "h": 90}], "x": 1}}], "user": {"ext": {"cookie_version": 1}}}'
    )
    assert request.imp[0].banner is not None and request.imp[0].banner.sizes() == [(728, 90)]
    assert request.user is not None and request.user.ext == {"cookie_version": 1}
    minimal = decode_bid_request(b'{"id": "x"}')
    assert minimal == BidRequest(id="x", imp=[], site=None, user=None, tmax=None, test=0)
    assert decode_bid_response(b'{"id": "a", "nbr": 2, "x": [1]}') == BidResponse(id="a", nbr=2)


def test_imp_defaults_are_openrtbs() -> None:
    imp = decode_bid_request(b'{"id": "x", "imp": [{"id": "1"}]}').imp[0]
    assert (imp.bidfloor, imp.bidfloorcur, imp.banner, imp.pmp) == (0.0, "USD", None, None)


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'{"imp": []}', b'{"id": "x", "imp": 3}', b'{"id": 1}', b"\xff\xfe",
     b'{"id": "x", "imp": [{"id": "1", "bidfloor": "0.5"}]}',
     b'{"id": "x", "user": {"ext": []}}',
     b'{"id": "x", "user": {"ext": {"a": ' + b"[" * 1000 + b"]" * 1000 + b"}}}"],
)  # fmt: skip
def test_not_a_bid_request(body: bytes) -> None:
    with pytest.raises(BidRequestError, match=r"^not an OpenRTB bid request: "):
        decode_bid_request(body)


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'{"seatbid": []}', b'{"id": "a", "seatbid": [{}]}',
     b'{"id": "a", "seatbid": [{"bid": [{"id": "b", "impid": "1", "price": "1.5"}]}]}',
     b'{"id": "a", "seatbid": [{"bid": [{"id": "b", "impid": "1"}]}]}',
     b'{"id": "a", "cur": 1}'],
)  # fmt: skip
def test_not_a_bid_response(body: bytes) -> None:
    with pytest.raises(InvalidBidResponse, match=r"^not an OpenRTB bid response: "):
        decode_bid_response(body)


@pytest.mark.parametrize(
    ("banner", "sizes"),
    [
        (Banner(), []),
        (Banner(w=300, h=250), [(300, 250)]),
        (Banner(w=300), []),
        (Banner(w=300, h=250, format=[Format(728, 90), Format(w=1)]), [(300, 250), (728, 90)]),
        (Banner(format=[Format(728, 90), Format(300, 250)]), [(728, 90), (300, 250)]),
    ],
)
def test_banner_sizes(banner: Banner, sizes: list[tuple[int, int]]) -> None:
    assert banner.sizes() == sizes


texts = st.text(max_size=8)
maybe_text = st.none() | texts
maybe_int = st.none() | st.integers(0, 10_000)
prices = st.floats(min_value=0, max_value=1e6, allow_nan=False)
ext = st.none() | st.dictionaries(texts, st.none() | st.booleans() | st.integers() | texts)
imps = st.builds(
    Imp,
    id=texts,
    banner=st.none() | st.builds(Banner, w=maybe_int, h=maybe_int),
    tagid=maybe_text,
    bidfloor=prices,
    bidfloorcur=st.sampled_from(["USD", "EUR"]),
    secure=st.none() | st.sampled_from([0, 1]),
)
bid_requests = st.builds(
    BidRequest,
    id=texts,
    imp=st.lists(imps, max_size=3),
    site=st.none() | st.builds(Site, id=maybe_text, page=maybe_text),
    device=st.none() | st.builds(Device, ua=maybe_text, ip=maybe_text),
    user=st.none() | st.builds(User, id=maybe_text, buyeruid=maybe_text, ext=ext),
    tmax=maybe_int,
    at=st.none() | st.sampled_from([1, 2]),
    cur=st.none() | st.lists(texts, max_size=2),
)
bids = st.builds(
    Bid,
    id=texts,
    impid=texts,
    price=prices,
    nurl=maybe_text,
    adm=maybe_text,
    adomain=st.none() | st.lists(texts, max_size=2),
    cid=maybe_text,
    w=maybe_int,
    ext=ext,
)
bid_responses = st.builds(
    BidResponse,
    id=texts,
    seatbid=st.lists(st.builds(SeatBid, bid=st.lists(bids, max_size=2), seat=maybe_text)),
    cur=st.none() | st.just("USD"),
    nbr=maybe_int,
)


@given(bid_requests)
def test_requests_round_trip(request: BidRequest) -> None:
    assert decode_bid_request(encode_bid_request(request)) == request


@given(bid_responses)
def test_responses_round_trip(response: BidResponse) -> None:
    assert decode_bid_response(encode_bid_response(response)) == response
