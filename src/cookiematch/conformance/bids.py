"""The bid side (``--bid-url``): OpenRTB 2.6 bid requests as an exchange sends them, with and
without the Google User ID, under ``regs``, with a ``tmax``; the answer must be a valid bid
response for the request (200) or no bid (204), in time."""

from __future__ import annotations

import time

from cookiematch.conformance import checks
from cookiematch.conformance.case import Answer, Case, Check, Request, Verdict
from cookiematch.conformance.ids import CVER, KitIds
from cookiematch.conformance.vectors import iab_requests
from cookiematch.errors import InvalidBidResponse
from cookiematch.protocol.openrtb import (
    Banner,
    BidRequest,
    Device,
    Imp,
    Publisher,
    Regs,
    Site,
    User,
    decode_bid_request,
    decode_bid_response,
    encode_bid_request,
)

SEED_BID = (
    "The buyer receives the bid request with impression information and the google_user_id. "
    "FinestDSP looks up the google_user_id in its match table"
)
SEED_IAB = (
    "OpenRTB 2.6, section 6 (the IAB's example bid requests, unchanged): a bidder answers "
    "every one with a bid response or no bid"
)
HEADERS = (("Content-Type", "application/json"), ("X-OpenRTB-Version", "2.6"))
TMAX_MS = 300


def valid_response(request: BidRequest) -> Check:
    """200 with a bid response for ``request`` (its id, bids on its imps, prices at or above
    the floors), or 204 No Content."""
    floors = {imp.id: imp.bidfloor for imp in request.imp}

    def judge(answer: Answer) -> Verdict:
        if answer.status == 204:
            return None
        if answer.status != 200:
            return f"answered {answer.status}: answer a bid response (200) or no bid (204)"
        try:
            response = decode_bid_response(answer.body)
        except InvalidBidResponse as exc:
            return f"{exc}: answer an OpenRTB 2.6 BidResponse object"
        if response.id != request.id:
            return f"BidResponse.id is {response.id!r}: echo the request's id {request.id!r}"
        for seat in response.seatbid:
            if not seat.bid:
                return "a seatbid without bids: leave it out (or answer 204)"
            for bid in seat.bid:
                if bid.impid not in floors:
                    return f"bid {bid.id!r} names impid {bid.impid!r}, not an imp of the request"
                if not bid.price > 0 or bid.price < floors[bid.impid]:
                    return (
                        f"bid {bid.id!r} at {bid.price} is under the floor "
                        f"{floors[bid.impid]} (or not positive)"
                    )
        return None

    return Check("a valid bid response or 204", judge)


def within_tmax(tmax_ms: int) -> Check:
    def judge(answer: Answer) -> Verdict:
        if answer.seconds * 1000 > tmax_ms:
            return (
                f"answered in {answer.seconds * 1000:.0f} ms with tmax={tmax_ms}: the exchange "
                "has dropped the bid by then"
            )
        return None

    return Check(f"answers within tmax ({tmax_ms} ms)", judge)


def bid_request(rid: str, user: User | None = None, regs: Regs | None = None) -> BidRequest:
    """A banner on a site, with a floor and ``tmax``, as an exchange sends it."""
    imp = Imp(id="1", banner=Banner(w=300, h=250), bidfloor=0.1, tagid="conformance")
    site = Site(id="site-1", domain="news.example", page="https://news.example/a",
                publisher=Publisher(id="pub-1"))  # fmt: skip
    device = Device(ua="Mozilla/5.0 (X11; Linux x86_64) conformance", ip="192.0.2.1")
    return BidRequest(
        id=rid, imp=[imp], site=site, device=device, user=user, regs=regs, tmax=TMAX_MS
    )


def bid_cases(bid_url: str, ids: KitIds) -> list[Case]:
    stamp = str(time.time_ns())
    with_gid = User(id=ids.gid(), ext={"cookie_version": CVER})
    requests = (
        ("bid request without a Google User ID", None, None),
        ("bid request with google_user_id (user.id)", with_gid, None),
        ("bid request under GDPR, no consent string", with_gid, Regs(gdpr=1)),
        ("bid request under COPPA and US Privacy opt-out", with_gid,
         Regs(coppa=1, us_privacy="1YYN")),
    )  # fmt: skip
    cases = []
    for i, (name, user, regs) in enumerate(requests):
        request = bid_request(f"conformance-{stamp}-{i}", user, regs)
        cases.append(_case(name, SEED_BID, bid_url, request, encode_bid_request(request)))
    for name, body in iab_requests():
        request = decode_bid_request(body)
        cases.append(_case(f"IAB example {name}", SEED_IAB, bid_url, request, body))
    return cases


def _case(name: str, seed: str, bid_url: str, request: BidRequest, body: bytes) -> Case:
    tmax = request.tmax or TMAX_MS
    return Case(
        name,
        seed,
        Request("POST", bid_url, HEADERS, body),
        (checks.NO_5XX, valid_response(request), within_tmax(tmax)),
        group="bid",
    )
