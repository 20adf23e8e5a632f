"""The bidder's common case (one impression, a gid, no privacy signal) against its general
path: the same answers, bytes, counts and bid log over many generated requests."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from cookiematch.buyer.bidder import Bidder, BidResult
from cookiematch.buyer.bidlog import BidLog
from cookiematch.buyer.campaigns import Audience, Campaign
from cookiematch.buyer.matchtable import MatchTable
from cookiematch.buyer.stats import BuyerStats
from cookiematch.buyer.wins import WinUrls
from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.privacy.policy import PrivacyPolicy, PrivacySettings
from cookiematch.protocol.openrtb import BidRequest, decode_bid_request, encode_bid_response
from cookiematch.protocol.win_notice import WinSigner
from cookiematch.storage import Store
from cookiematch.storage.guard import GuardedStore

from .conftest import GID, NID, PROSPECT, RETARGET, Clock, settings

UID = bytes(range(16))
STALE_GID = "c3RhbGUgZ2lkIGZvciB0ZXN0"
UNKNOWN_GID = "dW5rbm93biBnaWQgaGVyZQ"
SIZED = Campaign(
    "sized", adm="<b>sized</b>", audience=Audience.ANY, bid_price=1.5, w=728, h=90,
    adomain=("sized.example",),
)  # fmt: skip


@pytest.fixture
async def guarded(store: Store) -> AsyncIterator[GuardedStore]:
    """The store behind the guard the served bidder reads through (its deadline: 5 s)."""
    yield GuardedStore(store, deadline=5.0)


@pytest.fixture(params=["keys", "buckets"])
async def table(request: pytest.FixtureRequest, guarded: GuardedStore, clock: Clock) -> MatchTable:
    buckets = 4 if request.param == "buckets" else None
    table = MatchTable(guarded, NID, ttl_seconds=28 * DAY, clock=clock, buckets=buckets)
    clock.advance(-20 * DAY)
    await table.record(STALE_GID, bytes(16), 1)
    clock.advance(20 * DAY)
    await table.record(GID, UID, 1)
    return table


def bidders(
    table: MatchTable, clock: Clock, policy_settings: PrivacySettings, *, wins: bool, **kw: Any
) -> tuple[Bidder, Bidder]:
    """A bidder as served and one held to the general path, alike otherwise."""
    win_urls = WinUrls("https://buyer.example", WinSigner(b"k" * 32)) if wins else None
    made = [
        Bidder(
            table,
            (RETARGET, PROSPECT, SIZED),
            settings(**kw),
            BuyerStats(),
            BidLog(1000),
            policy=PrivacyPolicy(policy_settings),
            clock=clock,
            win_urls=win_urls,
        )
        for _ in range(2)
    ]
    made[1]._common = None
    return made[0], made[1]


def requests() -> list[tuple[bytes, bool]]:
    """Bodies and whether each is the common case (for the default policy)."""
    users: list[tuple[dict[str, Any] | None, bool]] = [
        ({"id": GID}, True),
        ({"id": STALE_GID}, True),
        ({"id": UNKNOWN_GID}, True),
        ({"id": "not base64 !"}, False),
        ({"id": GID, "ext": {"cookie_version": 1, "cookie_age_seconds": 5}}, True),
        ({"id": GID, "ext": {"consent": ""}}, True),
        ({"id": GID, "ext": {"consent": 0}}, False),
        ({"id": GID, "consent": "CPxyz"}, False),
        ({"id": GID, "buyeruid": "AAECAwQFBgcICQoLDA0ODw"}, True),
        ({}, False),
        (None, False),
    ]
    imps: list[tuple[list[dict[str, Any]], bool]] = [
        ([{"id": "1", "banner": {"w": 300, "h": 250}}], True),
        ([{"id": "i-2", "banner": {"format": [{"w": 728, "h": 90}]}, "bidfloor": 1.0}], True),
        ([{"id": "1", "banner": {"w": 1, "h": 1}, "bidfloor": 9.0}], True),
        ([{"id": "1", "banner": {}, "bidfloorcur": "EUR"}], True),
        ([{"id": "1", "banner": {}, "pmp": {"private_auction": 1}}], True),
        ([{"id": "1"}], True),
        ([{"id": "1", "banner": {}}, {"id": "2", "banner": {"w": 728, "h": 90}}], False),
        ([], False),
    ]
    others: list[tuple[dict[str, Any], bool]] = [
        ({}, True),
        ({"cur": ["USD"]}, True),
        ({"cur": ["EUR", "USD"]}, True),
        ({"cur": ["usd"]}, False),
        ({"cur": ["EUR"]}, False),
        ({"tmax": 5}, False),
        ({"tmax": 4000}, False),  # a budget under the store's deadline
        ({"badv": ["finest-shoes.example", "sized.example"]}, True),
        ({"regs": {"gdpr": 0}}, False),
        ({"regs": {"us_privacy": "1YYN"}}, False),
        ({"site": {"domain": "a.example", "page": "https://a.example/"}, "app": {"bundle": "b"}},
         True),
    ]  # fmt: skip
    bodies = []
    for n, ((user, u_ok), (imp, i_ok), (other, o_ok)) in enumerate(
        itertools.product(users, imps, others)
    ):
        body: dict[str, Any] = {"id": f"req-{n}", "imp": imp, **other}
        if user is not None:
            body["user"] = user
        bodies.append((json.dumps(body).encode(), u_ok and i_ok and o_ok))
    return bodies


async def as_served(bidder: Bidder, request: BidRequest, body: bytes) -> BidResult:
    """What ``POST /bid`` asks (``BuyerRoutes.bid_answer``): the bid log keeps the body."""
    return await bidder.bid(request, body)


def answer(bidder: Bidder, result: Any) -> tuple[Any, ...]:
    return (
        result.outcome,
        None if result.response is None else encode_bid_response(result.response),
        bidder.stats.snapshot(),
        Counter(bidder._policy.counts),
    )


@pytest.mark.parametrize("wins", [True, False])
@pytest.mark.parametrize(
    "policy_settings",
    [PrivacySettings(), PrivacySettings(gdpr_default=True, host_vendor_id=32)],
    ids=["default", "gdpr-by-default"],
)
@pytest.mark.parametrize("kw", [{}, {"public_url": "https://buyer.example"}, {"hosted": True}])
async def test_common_case_answers_as_the_general_path(
    table: MatchTable,
    clock: Clock,
    policy_settings: PrivacySettings,
    wins: bool,
    kw: dict[str, Any],
) -> None:
    served, general = bidders(table, clock, policy_settings, wins=wins, **kw)
    applies = served._common is not None
    assert applies == (not kw.get("hosted") and not policy_settings.gdpr_default)
    common = 0
    for body, expected in requests():
        request: BidRequest = decode_bid_request(body)
        took = served._common_gid(request) is not None
        assert took == (applies and expected and request.user is not None), body
        common += took
        assert answer(served, await as_served(served, request, body)) == answer(
            general, await general.bid(request)
        ), body
        clock.advance(0.25)
    assert common >= (150 if applies else 0)
    logged = [msgspec.to_builtins(b.bid_log.recent()) for b in (served, general)]
    assert logged[0] == logged[1]


async def test_common_case_store_error_is_no_bid(
    table: MatchTable, guarded: GuardedStore, clock: Clock
) -> None:
    served, general = bidders(table, clock, PrivacySettings(), wins=False)
    body = json.dumps({"id": "r", "imp": [{"id": "1", "banner": {}}], "user": {"id": GID}})
    request = decode_bid_request(body.encode())
    assert served._common_gid(request) == GID
    await guarded.close()  # the store goes away: both answer no bid, counted alike
    results = [await as_served(served, request, body.encode()), await general.bid(request)]
    assert [r.outcome for r in results] == ["store_error", "store_error"]
    assert answer(served, results[0]) == answer(general, results[1])
