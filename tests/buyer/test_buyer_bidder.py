"""The bidder: every IAB OpenRTB 2.6 example, matched users, the match tag, tmax."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import Awaitable, Sequence
from pathlib import Path

import msgspec
import pytest

from cookiematch.buyer.bidder import Bidder
from cookiematch.buyer.bidlog import BidLog, BidRecord
from cookiematch.buyer.matchtable import MatchTable
from cookiematch.buyer.stats import BuyerStats
from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.errors import StorageError
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.protocol.openrtb import (
    BidRequest,
    BidResponse,
    decode_bid_request,
    encode_bid_response,
)
from cookiematch.storage import Store

from .conftest import GID, NID, PROSPECT, RETARGET, Clock, MakeBidder, settings

# The IAB's section 6 examples, copied unchanged from the project's shared inputs.
from support.openrtb import EXAMPLES

UID = bytes(range(16))


def example_requests() -> list[Path]:
    found = sorted(EXAMPLES.glob("request-*.json"))
    assert len(found) == 5, f"OpenRTB examples missing in {EXAMPLES}"
    return found


def request(user: dict[str, object] | None = None, **fields: object) -> BidRequest:
    body: dict[str, object] = {"id": "r1", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}]}
    if user is not None:
        body["user"] = user
    body.update(fields)
    return decode_bid_request(json.dumps(body).encode())


def assert_valid_response(response: BidResponse, req: BidRequest) -> None:
    data = json.loads(msgspec.json.encode(response))
    assert data["id"] == req.id
    imp_ids = {imp.id for imp in req.imp}
    for seat in data["seatbid"]:
        assert seat["seat"] == NID
        for bid in seat["bid"]:
            assert bid["impid"] in imp_ids and bid["price"] > 0 and bid["adm"]


@pytest.mark.parametrize("path", example_requests(), ids=lambda p: p.stem)
async def test_every_iab_example_gets_a_valid_answer(make_bidder: MakeBidder, path: Path) -> None:
    bidder = make_bidder()
    req = decode_bid_request(path.read_bytes())
    result = await bidder.bid(req)
    if result.response is None:
        assert result.outcome in ("unmatched", "no_campaign")
    else:
        assert_valid_response(result.response, req)
    assert len(bidder.bid_log) == 1


async def test_iab_examples_answers(make_bidder: MakeBidder) -> None:
    bidder = make_bidder()
    outcomes = {}
    for path in example_requests():
        outcomes[path.stem] = (await bidder.bid(decode_bid_request(path.read_bytes()))).outcome
    # banner for an unknown user: the prospecting campaign bids; video: no banner creative;
    # a private auction with deals only: this buyer has no deals.
    assert outcomes["request-1-simple-banner"] == "bid"
    assert outcomes["request-4-video"] == "unmatched"
    assert outcomes["request-5-pmp-with-direct-deal"] == "unmatched"


async def test_matched_user_gets_the_retargeting_bid_without_match_tag(
    make_bidder: MakeBidder, table: MatchTable
) -> None:
    await table.record(GID, UID, 1)
    bidder = make_bidder()
    result = await bidder.bid(request({"id": GID}))
    assert result.response is not None
    bid = result.response.seatbid[0].bid[0]
    assert (bid.cid, bid.price, bid.w, bid.h) == ("retarget", 4.0, 300, 250)
    assert bid.adm == "<p>again</p>"
    assert bid.ext == {"matched": True, "match_tag": False}
    record = bidder.bid_log.recent()[-1]
    assert record.matched


async def test_each_look_up_counts_toward_the_match_rate(
    make_bidder: MakeBidder, table: MatchTable
) -> None:
    await table.record(GID, UID, 1)
    bidder = make_bidder()
    await bidder.bid(request({"id": GID}))
    await bidder.bid(request({"id": GID}))
    await bidder.bid(request({}))  # no user ID: looked up, unknown
    assert (bidder.stats.get("lookup", "matched"), bidder.stats.get("lookup", "unmatched")) == (
        2,
        1,
    )
    await bidder.bid(request({"id": GID}, imp=[]))  # refused before any look-up
    assert bidder.stats.get("lookup", "matched") + bidder.stats.get("lookup", "unmatched") == 3


async def test_response_bytes(make_bidder: MakeBidder, table: MatchTable) -> None:
    """What the exchange receives, byte for byte: absent fields (and ``cur``, USD) left out."""
    await table.record(GID, UID, 1)
    campaign = dataclasses.replace(RETARGET, adomain=("a.example",))
    imps = [{"id": "1", "banner": {"w": 300, "h": 250}}, {"id": "2", "banner": {}}]
    result = await make_bidder((campaign,)).bid(request({"id": GID}, imp=imps))
    assert result.response is not None
    assert encode_bid_response(result.response) == (
        b'{"id":"r1","seatbid":[{"bid":['
        b'{"id":"r1-1","impid":"1","price":4.0,"adm":"<p>again</p>","adomain":["a.example"],'
        b'"cid":"retarget","crid":"retarget","w":300,"h":250,'
        b'"ext":{"matched":true,"match_tag":false}},'
        b'{"id":"r1-2","impid":"2","price":4.0,"adm":"<p>again</p>","adomain":["a.example"],'
        b'"cid":"retarget","crid":"retarget","ext":{"matched":true,"match_tag":false}}],'
        b'"seat":"finest-dsp"}]}'
    )


async def test_unknown_user_gets_the_low_bid_with_the_match_tag(make_bidder: MakeBidder) -> None:
    result = await make_bidder().bid(request({"id": GID}))
    assert result.response is not None
    bid = result.response.seatbid[0].bid[0]
    assert (bid.cid, bid.price) == ("prospect", 0.5)
    assert bid.adm is not None
    assert bid.adm.startswith("<p>hello</p><img src=")
    assert f"https://exchange.example/pixel?google_nid={NID}&amp;google_cm" in bid.adm


async def test_retargeting_alone_does_not_bid_on_unknown_users(make_bidder: MakeBidder) -> None:
    result = await make_bidder((RETARGET,)).bid(request({"id": GID}))
    assert result.response is None and result.outcome == "unmatched"


async def test_stale_match_still_bids_as_matched_but_rematches(
    make_bidder: MakeBidder, table: MatchTable, clock: Clock
) -> None:
    await table.record(GID, UID, 1)
    clock.advance(15 * DAY)
    result = await make_bidder().bid(request({"id": GID}))
    assert result.response is not None
    bid = result.response.seatbid[0].bid[0]
    assert bid.cid == "retarget" and bid.adm is not None and "google_cm" in bid.adm


async def test_hosted_buyeruid_is_a_matched_user_without_table_entry(
    make_bidder: MakeBidder,
) -> None:
    buyeruid = base64.urlsafe_b64encode(UID).decode()
    bidder = make_bidder(hosted=True)
    result = await bidder.bid(request({"id": GID, "buyeruid": buyeruid}))
    assert result.response is not None
    bid = result.response.seatbid[0].bid[0]
    assert bid.cid == "retarget" and bid.adm == "<p>again</p>"
    assert bidder.bid_log.recent()[-1].match_tag_reason == "hosted"


async def test_buyeruid_is_ignored_without_hosted_match(make_bidder: MakeBidder) -> None:
    buyeruid = base64.urlsafe_b64encode(UID).decode()
    result = await make_bidder().bid(request({"id": GID, "buyeruid": buyeruid}))
    assert result.response is not None and result.response.seatbid[0].bid[0].cid == "prospect"


async def test_hosted_unknown_user_tag_goes_through_the_buyer(make_bidder: MakeBidder) -> None:
    bidder = make_bidder(hosted=True, public_url="https://buyer.example/")
    result = await bidder.bid(request({"id": GID}))
    assert result.response is not None
    adm = result.response.seatbid[0].bid[0].adm
    assert adm is not None and 'src="https://buyer.example/matchtag?format=redirect"' in adm


async def test_hosted_stale_user_tag_carries_google_hm(
    make_bidder: MakeBidder, table: MatchTable, clock: Clock
) -> None:
    await table.record(GID, UID, 1)
    clock.advance(20 * DAY)
    result = await make_bidder(hosted=True).bid(request({"id": GID}))
    assert result.response is not None
    adm = result.response.seatbid[0].bid[0].adm
    assert adm is not None and "google_hm=AAECAwQFBgcICQoLDA0ODw" in adm


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        ({"imp": []}, "no_imp"),
        ({"cur": ["EUR"]}, "currency"),
        ({"tmax": 5}, "tmax"),
        ({"imp": [{"id": "1", "bidfloor": 9.0, "banner": {"w": 1, "h": 1}}]}, "unmatched"),
        ({"imp": [{"id": "1", "bidfloorcur": "EUR", "banner": {}}]}, "unmatched"),
        ({"badv": ["x.example"], "imp": [{"id": "1", "banner": {}}]}, "unmatched"),
    ],
)
async def test_no_bid_reasons(
    make_bidder: MakeBidder, fields: dict[str, object], outcome: str
) -> None:
    campaigns = (RETARGET, dataclasses.replace(PROSPECT, adomain=("x.example",)))
    bidder = make_bidder(campaigns)
    result = await bidder.bid(request({"id": GID, "buyeruid": "AAECAwQFBgcICQoLDA0ODw"}, **fields))
    assert result.response is None and result.outcome == outcome
    assert bidder.stats.get("bid", outcome) == 1
    # refused before the privacy check or not, the log keeps no ID of the user
    logged = msgspec.to_builtins(bidder.bid_log.recent()[-1])
    assert GID not in str(logged) and "AAECAwQFBgcICQoLDA0ODw" not in str(logged)


class SlowStore:
    """A store whose reads take ``delay`` seconds (or fail)."""

    batched_reads = False

    def __init__(self, delay: float, fail: bool = False) -> None:
        self.delay = delay
        self.fail = fail

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise StorageError("down")
        return [None] * len(keys)

    async def get(self, key: str) -> bytes | None:
        return (await self.get_many([key]))[0]

    async def hget(self, key: str, field: str) -> bytes | None:
        return (await self.get_many([key]))[0]

    def hget_batched(self, key: str, field: str) -> Awaitable[bytes | None]:
        return self.hget(key, field)


@pytest.mark.parametrize("buckets", [None, 4])
@pytest.mark.parametrize(("delay", "fail", "outcome"), [(1.0, False, "timeout"),
                                                        (0.0, True, "store_error")])  # fmt: skip
async def test_slow_or_failing_lookup_is_no_bid(
    clock: Clock, delay: float, fail: bool, outcome: str, buckets: int | None
) -> None:
    slow = SlowStore(delay, fail)
    table = MatchTable(slow, NID, ttl_seconds=DAY, clock=clock, buckets=buckets)  # type: ignore[arg-type]
    bidder = Bidder(
        table, (PROSPECT,), settings(), BuyerStats(), BidLog(5), policy=PrivacyPolicy(), clock=clock
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await bidder.bid(request({"id": GID}, tmax=60))
    assert result.response is None and result.outcome == outcome
    assert loop.time() - started < 0.5


def test_bid_log_is_bounded() -> None:
    log = BidLog(2)
    for i in range(5):
        log.append(BidRecord(received_at=i, request_id=str(i), outcome="bid"))
    assert [r.request_id for r in log.recent()] == ["3", "4"]
    assert [r.request_id for r in log.recent(1)] == ["4"]
    assert log.recent(0) == []


def test_bid_log_builds_later_records_when_read() -> None:
    built: list[str] = []

    def build(request_id: str) -> BidRecord:
        built.append(request_id)
        return BidRecord(received_at=0.0, request_id=request_id, outcome="bid")

    log = BidLog(3)
    log.append_later(build, "a")
    log.append(BidRecord(received_at=1.0, request_id="b", outcome="tmax"))
    for request_id in "cd":
        log.append_later(build, request_id)
    assert built == [] and len(log) == 3
    assert [r.request_id for r in log.recent()] == ["b", "c", "d"]
    assert [r.request_id for r in log.recent(1)] == ["d"]
    assert built == ["c", "d", "d"]  # evicted records are never built


async def test_bid_log_records_what_the_bidder_answered(make_bidder: MakeBidder) -> None:
    """The record read later is the one built at answer time from the same values."""
    bidder = make_bidder()
    req = request({"id": GID, "ext": {"cookie_version": 1}}, tmax=80, site={"domain": "s.example"})
    result = await bidder.bid(req)
    assert result.response is not None
    record = bidder.bid_log.recent()[-1]
    assert record == BidRecord(
        received_at=record.received_at,
        request_id="r1",
        outcome="bid",
        match_tag=True,
        match_tag_reason="no_entry",
        privacy_reason="not_regulated",
        site_domain="s.example",
        imp_ids=["1"],
        tmax=80,
        prices=[0.5],
        campaigns=["prospect"],
    )


async def test_store_fixture_is_real(store: Store) -> None:
    await store.set("k", b"v")
    assert await store.get("k") == b"v"
