"""Pixel matching on a real SQLite store: who is chosen, the push URL, the return leg."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cookiematch.exchange import keys
from cookiematch.exchange.ad_service import AdRequest, AdService
from cookiematch.exchange.auction import Auction
from cookiematch.exchange.browser_record import (
    BrowserRecord,
    browser_record_key,
    gid_field,
    push_field,
)
from cookiematch.exchange.cookie_match import Browser, CookieMatchService
from cookiematch.exchange.model import Buyer, ExchangeSettings, Publisher
from cookiematch.exchange.monitoring import BuyerMonitor, Count, monitor_key
from cookiematch.exchange.outcomes import PushRecorded
from cookiematch.exchange.pixel_matching import PixelMatcher
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.protocol.matchtag import parse_match_tag
from cookiematch.protocol.push import PushTokens
from cookiematch.protocol.query import parse_query
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage import Store

from support.clock import FakeClock

BROWSER = bytes(range(16))
NOW = 1_700_000_000.0
DAY = 86400


class Randoms:
    """A scripted random source: returns the given values in turn, then the last forever."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def __call__(self) -> float:
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


class OneBidder:
    """``winner`` always bids; everybody else answers no bid."""

    def __init__(self, winner: str) -> None:
        self.winner = winner

    async def post(self, url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        if f"//{self.winner}." not in url:
            return 204, b""
        auction_id = json.loads(body)["id"]
        bid = {"id": "b", "impid": "1", "price": 1.0, "adm": "ad"}
        return 200, json.dumps({"id": auction_id, "seatbid": [{"bid": [bid]}]}).encode()


def buyer(nid: str, *, bids: bool = False, push: bool = True, pixel: bool = True) -> Buyer:
    return Buyer(
        nid,
        RedirectTemplate.compile(f"http://{nid}.example/match"),
        bidder_url=f"http://{nid}.example/bid" if bids else None,
        push_url=RedirectTemplate.compile(f"http://{nid}.example/push?x=1") if push else None,
        pixel_matching=pixel,
    )


BUYERS = [
    buyer("alpha"),
    buyer("beta"),
    buyer("gamma"),
    buyer("winner", bids=True),
    buyer("nopush", push=False, pixel=False),
    buyer("disabled", pixel=False),
]


class World:
    def __init__(
        self, store: Store, *randoms: float, suspended: Callable[[str], bool] | None = None
    ) -> None:
        self.store = store
        self.clock = FakeClock()
        self.random = Randoms(*(randoms or (0.0,)))
        self.settings = ExchangeSettings()
        self.cipher = UserIdCipher({3: b"k" * 32})
        self.push = PushTokens(self.cipher, ttl_seconds=3600)
        self.monitor = BuyerMonitor(store, self.settings, clock=self.clock, worker_id="w")
        self.registry = ExchangeRegistry(store, BUYERS)
        self.matcher = PixelMatcher(
            cipher=self.cipher,
            push_tokens=self.push,
            settings=self.settings,
            monitor=self.monitor,
            clock=self.clock,
            random=self.random,
            suspended=suspended,
        )
        self.ads = AdService(
            registry=self.registry,
            publishers=[Publisher("news"), Publisher("private", pixel_matching=False)],
            store=store,
            cipher=self.cipher,
            auction=Auction(OneBidder("winner"), self.monitor, clock=self.clock),
            pixel_matcher=self.matcher,
            settings=self.settings,
            clock=self.clock,
            new_browser_id=lambda: bytes(16),
            new_auction_id=lambda: "a",
        )
        self.cookie_match = CookieMatchService(
            registry=self.registry,
            store=store,
            cipher=self.cipher,
            push_tokens=self.push,
            settings=self.settings,
            clock=self.clock,
            new_browser_id=lambda: bytes(16),
            monitor=self.monitor,
        )

    async def serve(self, publisher: str = "news") -> Any:
        return await self.ads.serve(
            AdRequest(Publisher(publisher, publisher == "news"), "s", Browser(BROWSER), "https")
        )

    async def push_back(self, nid: str, token: str) -> Any:
        request = parse_match_tag(parse_query(f"google_nid={nid}&google_push={token}"))
        found = self.registry.buyer(nid)
        assert found is not None
        outcome = await self.cookie_match.match(request, found, Browser(BROWSER), "https")
        await self.monitor.drain()
        return outcome


def params(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


async def test_candidates_exclude_winner_disabled_recent_and_pending(store: Store) -> None:
    matcher = World(store).matcher
    record = BrowserRecord.parse({push_field("beta"): b"%d" % (NOW - 600)})
    matches = {"gamma": b"%d" % (NOW - 13 * DAY), "alpha": b"%d" % (NOW - 15 * DAY)}
    found = matcher.candidates(BUYERS, "winner", record, matches)
    assert [b.nid for b in found] == ["alpha"]  # beta pending, gamma matched 13 days ago
    cookie_matched = BrowserRecord.parse({gid_field("alpha"): b"%d" % (NOW - DAY)})
    assert [b.nid for b in matcher.candidates(BUYERS, "winner", cookie_matched, {})] == [
        "beta", "gamma",
    ]  # fmt: skip
    later = BrowserRecord.parse({push_field("beta"): b"%d" % (NOW - 3600)})
    assert [b.nid for b in matcher.candidates(BUYERS, None, later, {})] == [
        "alpha", "beta", "gamma", "winner",
    ]  # fmt: skip


async def test_push_url_carries_gid_cver_and_a_verifiable_token(store: Store) -> None:
    world = World(store, 0.5)  # middle of [alpha, beta, gamma]: beta
    served = await world.serve()
    assert served.winner.nid == "winner"
    match = served.pixel_match
    assert match.nid == "beta"
    assert match.url.startswith("https://beta.example/push?x=1&google_push=")
    got = params(match.url)
    assert got["google_cver"] == "3"
    assert world.cipher.decrypt(got["google_gid"], "beta", 3) == BROWSER
    claim = world.push.verify(got["google_push"], "beta", int(NOW))
    assert claim.browser_id == BROWSER
    assert await store.hget(browser_record_key(BROWSER), push_field("beta")) == b"%d" % NOW
    assert (await world.monitor.stats("beta")).counts[Count.PUSHES_ISSUED] == 1


async def test_selection_is_deterministic_under_the_random_source(store: Store) -> None:
    chosen = []
    for value in (0.0, 0.34, 0.67, 0.999):
        world = World(store, value)
        await store.delete(browser_record_key(BROWSER))
        chosen.append((await world.serve()).pixel_match.nid)
    assert chosen == ["alpha", "beta", "gamma", "gamma"]


async def test_pending_then_returned_then_expired(store: Store) -> None:
    world = World(store, 0.0)
    first = (await world.serve()).pixel_match
    assert first.nid == "alpha"
    second = (await world.serve()).pixel_match
    assert second.nid == "beta"  # alpha's push is pending
    outcome = await world.push_back("alpha", params(first.url)["google_push"])
    assert outcome == PushRecorded("alpha", True)
    assert (await world.monitor.stats("alpha")).counts[Count.PUSHES_RETURNED] == 1

    world.clock.now += 2 * 3600  # pending pushes have expired; alpha's match is fresh
    third = (await world.serve()).pixel_match
    assert third.nid == "beta"
    world.clock.now += 14 * DAY  # alpha's match has expired: introduced again
    assert (await world.serve()).pixel_match.nid == "alpha"


async def test_a_buyer_given_a_gid_by_its_own_match_tag_is_not_offered_a_pixel_match(
    store: Store,
) -> None:
    world = World(store, 0.0)
    request = parse_match_tag(parse_query("google_nid=alpha&google_cm"))
    alpha = world.registry.buyer("alpha")
    assert alpha is not None
    await world.cookie_match.match(request, alpha, Browser(BROWSER), "https")
    await world.monitor.drain()  # the gid's time is written with the checks
    assert await store.hget(browser_record_key(BROWSER), gid_field("alpha")) == b"%d" % NOW
    assert (await world.serve()).pixel_match.nid == "beta"
    world.clock.now += 14 * DAY  # the match tag's gid has expired: alpha is offered one
    assert (await world.serve()).pixel_match.nid == "alpha"


async def test_publisher_opt_out_and_no_candidates(store: Store) -> None:
    world = World(store, 0.0)
    assert (await world.serve("private")).pixel_match is None
    for nid in ("alpha", "beta", "gamma"):
        await store.hset(keys.pixel_matches_key(BROWSER), {nid: b"%d" % NOW})
    assert (await world.serve()).pixel_match is None  # the winner is never pixel matched


async def test_low_response_rate_is_throttled(store: Store) -> None:
    world = World(store, 0.5, 0.0)  # alpha's throttle draw 0.5: skipped; then pick
    # alpha answered 50 of 100 pushes, seen by another worker
    await store.hset(monitor_key("alpha"), {
        f"{int(NOW) // 600}.other.pushes_issued": b"100",
        f"{int(NOW) // 600}.other.pushes_returned": b"50",
    })  # fmt: skip
    await world.monitor.refresh_rates(["alpha", "beta", "gamma"])
    assert world.monitor.response_rate("alpha") == 0.5
    assert world.monitor.response_rate("beta") is None  # too few pushes to judge
    match = (await world.serve()).pixel_match
    assert match.nid == "beta"  # alpha throttled away; then 0.0 picks the first of beta, gamma
    assert (await world.monitor.stats("alpha")).counts[Count.PUSHES_THROTTLED] == 1

    await store.delete(browser_record_key(BROWSER))
    world.random.values = [0.05, 0.0]  # under the 10 % fraction: alpha stays a candidate
    assert (await world.serve()).pixel_match.nid == "alpha"


async def test_a_buyer_whose_pixel_matching_is_suspended_is_not_offered_one(
    store: Store,
) -> None:
    world = World(store, 0.0, suspended=lambda nid: nid == "alpha")
    assert (await world.serve()).pixel_match.nid == "beta"  # 0.0: the first of beta, gamma
    assert (await world.monitor.stats("alpha")).counts[Count.PUSHES_SUSPENDED] == 1


async def test_forged_push_is_not_recorded(store: Store) -> None:
    world = World(store, 0.0)
    match = (await world.serve()).pixel_match
    token = params(match.url)["google_push"]
    outcome = await world.push_back("beta", token)  # alpha's token, returned by beta
    assert getattr(outcome, "error", None) == 5
    assert await store.hgetall(keys.pixel_matches_key(BROWSER)) == {}
    assert (await world.monitor.stats("beta")).counts.get(Count.PUSHES_RETURNED, 0) == 0
