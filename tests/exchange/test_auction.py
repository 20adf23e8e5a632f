"""The exchange's ad server and auction on a real SQLite store, bidders in process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from cookiematch.exchange import keys
from cookiematch.exchange.ad_service import AdRequest, AdService
from cookiematch.exchange.auction import Auction, Outcome
from cookiematch.exchange.browser_record import CREATED, browser_record_key
from cookiematch.exchange.cookie_match import Browser
from cookiematch.exchange.model import Buyer, ExchangeSettings, Publisher, UserList
from cookiematch.exchange.monitoring import BuyerMonitor, Count
from cookiematch.exchange.pixel_matching import PixelMatcher
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.protocol.push import PushTokens
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage import Store

from support.clock import FakeClock

BROWSER = bytes(range(16))
NEW_BROWSER = bytes(range(100, 116))
NOW = 1_700_000_000.0
NEWS = Publisher("examplenews")
Reply = tuple[float, int, bytes]  # delay, status, body


class Bidders:
    """In-process bidders: URL -> function of the decoded request; records every request."""

    def __init__(self) -> None:
        self.replies: dict[str, Callable[[dict[str, Any]], Reply]] = {}
        self.requests: dict[str, list[dict[str, Any]]] = {}
        self.bodies: list[bytes] = []

    async def post(self, url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        self.bodies.append(body)
        request = json.loads(body)
        self.requests.setdefault(url, []).append(request)
        delay, status, reply = self.replies[url](request)
        if delay:
            await asyncio.sleep(delay)
        if status < 0:
            raise ConnectionError("refused")
        return status, reply


def bid(price: float, adm: str = "<b>ad</b>", **extra: Any) -> Callable[[dict[str, Any]], Reply]:
    def reply(request: dict[str, Any]) -> Reply:
        one = {"id": "b1", "impid": "1", "price": price, "adm": adm, **extra}
        return 0.0, 200, json.dumps({"id": request["id"], "seatbid": [{"bid": [one]}]}).encode()

    return reply


def buyer(nid: str, **kwargs: Any) -> Buyer:
    return Buyer(
        nid,
        RedirectTemplate.compile(f"http://{nid}.example/match"),
        bidder_url=f"http://{nid}.example/bid",
        **kwargs,
    )


class World:
    def __init__(
        self,
        store: Store,
        buyers: list[Buyer],
        timeout_ms: int = 100,
        user_lists: tuple[UserList, ...] = (),
    ) -> None:
        self.store = store
        self.clock = FakeClock()
        self.settings = ExchangeSettings(auction_timeout_ms=timeout_ms)
        self.cipher = UserIdCipher({1: b"k" * 32})
        self.push = PushTokens(self.cipher)
        self.monitor = BuyerMonitor(store, self.settings, clock=self.clock, worker_id="w1")
        self.bidders = Bidders()
        self.registry = ExchangeRegistry(store, buyers, user_lists)
        self.auction = Auction(self.bidders, self.monitor, clock=self.clock)
        self.randoms = [0.0]
        self.service = AdService(
            registry=self.registry,
            publishers=[NEWS, Publisher("optedout", pixel_matching=False)],
            store=store,
            cipher=self.cipher,
            auction=self.auction,
            pixel_matcher=PixelMatcher(
                cipher=self.cipher,
                push_tokens=self.push,
                settings=self.settings,
                monitor=self.monitor,
                clock=self.clock,
                random=lambda: self.randoms.pop(0) if len(self.randoms) > 1 else self.randoms[0],
            ),
            settings=self.settings,
            clock=self.clock,
            new_browser_id=lambda: NEW_BROWSER,
            new_auction_id=lambda: "auction-1",
        )

    async def serve(self, browser: Browser, publisher: Publisher = NEWS) -> Any:
        return await self.service.serve(AdRequest(publisher, "top", browser, "https"))

    def last(self, nid: str) -> dict[str, Any]:
        return self.bidders.requests[f"http://{nid}.example/bid"][-1]

    async def count(self, nid: str, what: Count) -> int:
        return (await self.monitor.stats(nid)).counts.get(what, 0)


async def test_bid_request_carries_each_buyers_gid_and_cookie_data(store: Store) -> None:
    world = World(store, [buyer("finest"), buyer("other")])
    world.bidders.replies.update({b: bid(1.0) for b in ("http://finest.example/bid",)})
    world.bidders.replies["http://other.example/bid"] = lambda r: (0.0, 204, b"")
    await store.hset(browser_record_key(BROWSER), {CREATED: b"%d" % (NOW - 3600)})
    await world.serve(Browser(BROWSER))
    for nid in ("finest", "other"):
        sent = world.last(nid)
        assert world.cipher.decrypt(sent["user"]["id"], nid, 1) == BROWSER
        assert sent["user"]["ext"] == {"cookie_version": 1, "cookie_age_seconds": 3600}
        assert "buyeruid" not in sent["user"]
        assert sent["imp"] == [{"id": "1", "banner": {"w": 300, "h": 250}, "tagid": "top",
                                "secure": 1}]  # fmt: skip
        assert sent["site"]["publisher"] == {"id": "examplenews"}
        assert sent["tmax"] == 100 and sent["at"] == 1 and sent["cur"] == ["USD"]
    assert world.last("finest")["user"]["id"] != world.last("other")["user"]["id"]


async def test_bid_request_bytes(store: Store) -> None:
    """What a buyer receives, byte for byte: absent fields left out, keys in this order."""
    world = World(store, [buyer("hm", hosted_match=True)])
    world.bidders.replies["http://hm.example/bid"] = lambda r: (0.0, 204, b"")
    await store.hset(browser_record_key(BROWSER), {CREATED: b"%d" % (NOW - 3600)})
    await store.set(keys.hosted_match_key(BROWSER, "hm"), b"\x01\x02\xff")
    ua = 'Mozilla/5.0 "x"'
    ad = AdRequest(NEWS, "top", Browser(BROWSER), "https", 728, 90, "https://n.example/", ua, "::1")
    await world.service.serve(ad)
    await world.service.serve(AdRequest(NEWS, "side", Browser(None, opted_out=True), "http"))
    assert world.bidders.bodies == [
        b'{"id":"auction-1","imp":[{"id":"1","banner":{"w":728,"h":90},"tagid":"top","secure":1}],'
        b'"site":{"id":"examplenews","publisher":{"id":"examplenews"},"page":"https://n.example/"},'
        b'"device":{"ua":"Mozilla/5.0 \\"x\\"","ip":"::1"},'
        b'"user":{"id":"Mk_3cMwUaIL80-uFpCTq5If7eRw","buyeruid":"AQL_",'
        b'"ext":{"cookie_version":1,"cookie_age_seconds":3600}},"tmax":100,"at":1,"cur":["USD"]}',
        b'{"id":"auction-1","imp":[{"id":"1","banner":{"w":300,"h":250},"tagid":"side","secure":0}],'
        b'"site":{"id":"examplenews","publisher":{"id":"examplenews"}},"device":{},"user":{},'
        b'"tmax":100,"at":1,"cur":["USD"]}',
    ]


async def test_hosted_match_data_and_pretargeting(store: Store) -> None:
    world = World(
        store,
        [
            buyer("hosted", hosted_match=True, require_hosted_match=True),
            buyer("plain", hosted_match=True),
        ],
    )
    world.bidders.replies["http://hosted.example/bid"] = bid(2.0)
    world.bidders.replies["http://plain.example/bid"] = bid(1.0)
    served = await world.serve(Browser(BROWSER))
    assert "http://hosted.example/bid" not in world.bidders.requests  # no hosted data: not asked
    assert "buyeruid" not in world.last("plain")["user"]
    assert served.winner.nid == "plain"

    await store.set(keys.hosted_match_key(BROWSER, "hosted"), b"Cookie number 1!")
    served = await world.serve(Browser(BROWSER))
    assert world.last("hosted")["user"]["buyeruid"] == "Q29va2llIG51bWJlciAxIQ"
    assert "buyeruid" not in world.last("plain")["user"]
    assert served.winner.nid == "hosted"


async def test_pre_targeting_on_user_list_membership(store: Store) -> None:
    lists = (UserList(1, owner="listed"), UserList(2, owner="listed"), UserList(3, owner="plain"))
    world = World(
        store,
        [buyer("listed", require_user_lists=(1, 2)), buyer("plain")],
        user_lists=lists,
    )
    world.bidders.replies["http://listed.example/bid"] = bid(2.0)
    world.bidders.replies["http://plain.example/bid"] = bid(1.0)
    served = await world.serve(Browser(BROWSER))
    assert "http://listed.example/bid" not in world.bidders.requests  # not a member: not asked
    assert served.winner.nid == "plain"
    assert "user_lists" not in world.last("plain")["user"]["ext"]

    # a member of list 2 (and of the other buyer's list 3): asked, told its own lists only
    await store.hset(keys.user_lists_key(BROWSER), {"2": b"1", "3": b"1"}, ttl=60)
    served = await world.serve(Browser(BROWSER))
    assert served.winner.nid == "listed"
    assert world.last("listed")["user"]["ext"]["user_lists"] == [2]
    assert world.last("plain")["user"]["ext"]["user_lists"] == [3]
    # a new browser is nobody's member
    await world.serve(Browser(None))
    assert len(world.bidders.requests["http://listed.example/bid"]) == 1


async def test_new_browser_gets_a_cookie_and_a_record(store: Store) -> None:
    world = World(store, [buyer("finest")])
    world.bidders.replies["http://finest.example/bid"] = bid(1.0)
    served = await world.serve(Browser(None))
    assert served.set_browser_id == NEW_BROWSER
    sent = world.last("finest")["user"]
    assert world.cipher.decrypt(sent["id"], "finest", 1) == NEW_BROWSER
    assert sent["ext"]["cookie_age_seconds"] == 0
    assert await store.hget(browser_record_key(NEW_BROWSER), CREATED) == b"%d" % NOW
    assert served.pixel_match is None  # not before the cookie has come back once

    world.clock.now += 50
    await world.serve(Browser(NEW_BROWSER))
    assert world.last("finest")["user"]["ext"]["cookie_age_seconds"] == 50


async def test_opted_out_browser_is_anonymous(store: Store) -> None:
    world = World(store, [buyer("finest"), buyer("hosted", hosted_match=True,
                                                  require_hosted_match=True)])  # fmt: skip
    world.bidders.replies["http://finest.example/bid"] = bid(1.0)
    served = await world.serve(Browser(None, opted_out=True))
    assert served.set_browser_id is None
    assert world.last("finest")["user"] == {}
    assert "http://hosted.example/bid" not in world.bidders.requests


async def test_highest_price_wins_and_failures_are_dropped(store: Store) -> None:
    nids = ["cheap", "rich", "slow", "broken", "liar", "down", "silent", "twin"]
    world = World(store, [buyer(n) for n in nids])
    replies: dict[str, Callable[[dict[str, Any]], Reply]] = {
        "cheap": bid(1.0, adm="cheap ${AUCTION_PRICE} ${AUCTION_ID}"),
        "rich": bid(3.0, adm="rich ${AUCTION_PRICE} ${AUCTION_ID}"),
        "slow": lambda r: (5.0, *bid(99.0)(r)[1:]),
        "broken": lambda r: (0.0, 200, b"{not json"),
        "liar": lambda r: (0.0, 200, json.dumps({"id": "other", "seatbid": []}).encode()),
        "down": lambda r: (0.0, -1, b""),
        "silent": lambda r: (0.0, 500, b""),
        "twin": bid(3.0),
    }
    for nid, reply in replies.items():
        world.bidders.replies[f"http://{nid}.example/bid"] = reply
    started = asyncio.get_running_loop().time()
    served = await world.serve(Browser(BROWSER))
    assert asyncio.get_running_loop().time() - started < 1.0  # the slow bidder did not wait
    assert served.winner.nid == "rich"  # 3.0 ties with twin: the lower nid wins
    assert served.winner.adm == "rich 3 auction-1"  # OpenRTB macros expanded
    assert served.outcomes == {
        "cheap": Outcome.BID, "rich": Outcome.BID, "twin": Outcome.BID,
        "slow": Outcome.TIMEOUT, "broken": Outcome.INVALID, "liar": Outcome.INVALID,
        "down": Outcome.ERROR, "silent": Outcome.ERROR,
    }  # fmt: skip
    assert await world.count("slow", Count.TIMEOUTS) == 1
    assert await world.count("broken", Count.INVALID) == 1
    assert await world.count("down", Count.ERRORS) == 1
    assert await world.count("rich", Count.WINS) == 1
    assert await world.count("cheap", Count.BID_REQUESTS) == 1


async def test_no_bid_is_a_house_ad(store: Store) -> None:
    world = World(store, [buyer("quiet")])
    world.bidders.replies["http://quiet.example/bid"] = lambda r: (0.0, 204, b"")
    served = await world.serve(Browser(BROWSER))
    assert served.winner is None
    assert served.outcomes == {"quiet": Outcome.NO_BID}


async def test_max_qps_throttles_and_counts(store: Store) -> None:
    world = World(store, [buyer("capped", max_qps=2), buyer("free")])
    for nid in ("capped", "free"):
        world.bidders.replies[f"http://{nid}.example/bid"] = lambda r: (0.0, 204, b"")
    for _ in range(5):  # the clock does not move: a burst of 5 in the same instant
        await world.serve(Browser(BROWSER))
    assert len(world.bidders.requests["http://capped.example/bid"]) == 2
    assert len(world.bidders.requests["http://free.example/bid"]) == 5
    assert await world.count("capped", Count.BID_REQUESTS_THROTTLED) == 3
    world.clock.now += 1  # refilled
    await world.serve(Browser(BROWSER))
    assert len(world.bidders.requests["http://capped.example/bid"]) == 3


async def test_store_failure_degrades_to_anonymous_bids(store: Store) -> None:
    world = World(store, [buyer("finest")])
    world.bidders.replies["http://finest.example/bid"] = bid(1.0)
    await store.close()
    served = await world.serve(Browser(BROWSER))
    assert served.winner.nid == "finest"
    assert world.cipher.decrypt(world.last("finest")["user"]["id"], "finest", 1) == BROWSER
