"""Per-buyer monitoring on a real SQLite store: shared counters, windows, frequency capping."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from cookiematch.exchange.browser_record import CREATED, browser_record_key, gid_field
from cookiematch.exchange.cookie_match import Browser, CookieMatchService
from cookiematch.exchange.model import Buyer, ExchangeSettings
from cookiematch.exchange.monitoring import (
    MIN_PUSHES_FOR_RATE,
    BuyerMonitor,
    Count,
)
from cookiematch.exchange.outcomes import RedirectToBuyer
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.protocol.matchtag import parse_match_tag
from cookiematch.protocol.push import PushTokens
from cookiematch.protocol.query import parse_query
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage import Store, open_store

from support.clock import FakeClock

BROWSER = bytes(range(16))
NOW = 1_700_000_000.0
DAY = 86400


def monitor(store: Store, clock: FakeClock, worker: str = "w1") -> BuyerMonitor:
    return BuyerMonitor(store, ExchangeSettings(), clock=clock, worker_id=worker)


async def test_workers_share_counts_through_the_store(store: Store) -> None:
    clock = FakeClock()
    one, two = monitor(store, clock, "w1"), monitor(store, clock, "w2")
    for _ in range(3):
        one.count("dsp", Count.BID_REQUESTS)
    two.count("dsp", Count.BID_REQUESTS, 4)
    two.count("dsp", Count.BID_REQUESTS_THROTTLED)
    await two.flush()
    stats = await one.stats("dsp", max_qps=5)  # flushes its own first
    assert stats.counts[Count.BID_REQUESTS] == 7
    assert stats.to_dict()["bid_requests_throttled"] == 1
    assert stats.to_dict()["max_qps"] == 5
    one.count("dsp", Count.BID_REQUESTS)  # cumulative per worker: rewritten, not added twice
    assert (await two.stats("dsp")).counts[Count.BID_REQUESTS] == 7
    assert (await one.stats("dsp")).counts[Count.BID_REQUESTS] == 8


async def test_counts_leave_the_window(store: Store) -> None:
    clock = FakeClock()
    watcher = monitor(store, clock)
    watcher.count("dsp", Count.WINS)
    clock.now += DAY - 600
    watcher.count("dsp", Count.WINS)
    assert (await watcher.stats("dsp")).counts[Count.WINS] == 2
    clock.now += 1200
    assert (await watcher.stats("dsp")).counts[Count.WINS] == 1


async def test_response_rate_needs_enough_pushes(store: Store) -> None:
    clock = FakeClock()
    watcher = monitor(store, clock)
    watcher.count("dsp", Count.PUSHES_ISSUED, MIN_PUSHES_FOR_RATE - 1)
    assert (await watcher.stats("dsp")).response_rate is None
    watcher.count("dsp", Count.PUSHES_ISSUED)
    watcher.count("dsp", Count.PUSHES_RETURNED, 18)
    stats = await watcher.stats("dsp")
    assert stats.response_rate == 0.9
    assert stats.to_dict()["pixel_match_response_rate"] == 0.9
    assert watcher.response_rate("dsp") is None  # the cached view changes on refresh only
    await watcher.refresh_rates(["dsp"])
    assert watcher.response_rate("dsp") == 0.9


class Exchange:
    def __init__(self, store: Store) -> None:
        self.clock = FakeClock()
        self.monitor = monitor(store, self.clock)
        cipher = UserIdCipher({1: b"k" * 32})
        self.buyer = Buyer("dsp", RedirectTemplate.compile("http://dsp.example/m"))
        self.service = CookieMatchService(
            registry=ExchangeRegistry(store, [self.buyer]),
            store=store,
            cipher=cipher,
            push_tokens=PushTokens(cipher),
            settings=ExchangeSettings(),
            clock=self.clock,
            new_browser_id=lambda: BROWSER,
            monitor=self.monitor,
        )

    async def match_tag(self, query: str = "google_nid=dsp&google_cm") -> RedirectToBuyer:
        outcome = await self.service.match(
            parse_match_tag(parse_query(query)), self.buyer, Browser(BROWSER), "http"
        )
        await self.monitor.drain()
        assert isinstance(outcome, RedirectToBuyer)
        return outcome

    async def violations(self) -> int:
        stats = await self.monitor.stats("dsp")
        return stats.counts.get(Count.FREQUENCY_CAP_VIOLATIONS, 0)


async def test_match_tag_for_a_freshly_matched_browser_is_a_violation(store: Store) -> None:
    exchange = Exchange(store)
    await exchange.match_tag()
    assert await exchange.violations() == 0
    assert await store.hget(browser_record_key(BROWSER), gid_field("dsp")) == b"%d" % NOW
    exchange.clock.now += 3 * DAY  # scenario 2's week, roughly: the buyer should know Jane
    await exchange.match_tag()
    assert await exchange.violations() == 1
    assert (await exchange.monitor.stats("dsp")).counts[Count.MATCH_TAGS] == 1  # 24 h window
    exchange.clock.now += 14 * DAY  # stale now: refreshing the match is allowed
    await exchange.match_tag()
    assert await exchange.violations() == 0  # (the earlier one has left the window)
    assert (await exchange.monitor.stats("dsp")).counts[Count.MATCH_TAGS] == 1


async def test_errors_and_user_list_only_tags_are_not_matches(store: Store) -> None:
    exchange = Exchange(store)
    await exchange.match_tag("google_nid=dsp&google_ula=1")  # no google_cm: no gid
    await exchange.match_tag("google_nid=dsp&google_cm&google_push=x")  # error 4
    assert (await exchange.monitor.stats("dsp")).counts.get(Count.MATCH_TAGS, 0) == 0


async def test_cookie_setting_hop_records_the_cookie_creation(store: Store) -> None:
    exchange = Exchange(store)
    await exchange.match_tag("google_nid=dsp&google_cm&google_sc&google_tc=1")
    assert await store.hget(browser_record_key(BROWSER), CREATED) == b"%d" % NOW


async def test_two_match_tags_a_moment_apart_see_each_other(store: Store) -> None:
    exchange = Exchange(store)
    request = parse_match_tag(parse_query("google_nid=dsp&google_cm"))
    for _ in range(2):  # the second check starts before the first one's write is committed
        await exchange.service.match(request, exchange.buyer, Browser(BROWSER), "http")
    await exchange.monitor.drain()
    assert await exchange.violations() == 1


async def test_repeats_within_a_batch_are_coalesced_and_each_is_a_violation(
    store: Store,
) -> None:
    clock = FakeClock()
    watcher = monitor(store, clock)
    other = bytes(range(1, 17))
    for _ in range(5_000):  # nothing applies them meanwhile
        watcher.gid_issued("dsp", other)
        clock.now += 1
    assert watcher.pending_checks == 5_000
    await watcher.drain()
    assert watcher.pending_checks == 0
    stats = await watcher.stats("dsp")
    assert stats.counts[Count.MATCH_TAGS] == 5_000
    assert Count.CHECKS_DROPPED not in stats.counts
    # every check after the first saw the one before it: all are violations
    assert stats.counts[Count.FREQUENCY_CAP_VIOLATIONS] == 4_999
    record = await store.hgetall(browser_record_key(other))
    assert record[gid_field("dsp")] == str(int(NOW) + 4_999).encode()


async def test_beyond_the_bound_a_new_pair_is_dropped_and_counted(store: Store) -> None:
    clock = FakeClock()
    watcher = BuyerMonitor(
        store, ExchangeSettings(), clock=clock, worker_id="w", max_pending_pairs=10
    )
    browsers = [bytes([i + 1]) * 16 for i in range(15)]
    for browser in browsers:
        watcher.gid_issued("dsp", browser)
    watcher.gid_issued("dsp", browsers[0])  # a pair already waiting: coalesced, judged
    watcher.push_returned("dsp", browsers[14])  # a new pair: dropped as well
    await watcher.drain()
    stats = await watcher.stats("dsp")
    assert stats.counts[Count.CHECKS_DROPPED] == 6
    assert stats.counts[Count.FREQUENCY_CAP_VIOLATIONS] == 1
    assert await store.hgetall(browser_record_key(browsers[9]))
    assert not await store.hgetall(browser_record_key(browsers[10]))


async def test_a_full_batch_is_applied_before_its_second_is_over(store: Store) -> None:
    watcher = BuyerMonitor(
        store,
        ExchangeSettings(),
        clock=FakeClock(),
        worker_id="w",
        check_seconds=3600,
        flush_at_pairs=10,
    )
    consumer = asyncio.create_task(watcher.consume())
    for i in range(10):
        watcher.gid_issued("dsp", bytes([i + 1]) * 16)
    while watcher.pending_checks or not await store.hgetall(
        browser_record_key(bytes([10]) * 16)
    ):  # the test's timeout bounds this: the hour-long timer never fires in it
        await asyncio.sleep(0.01)
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer


async def test_closing_applies_what_was_recorded(store: Store) -> None:
    watcher = monitor(store, FakeClock())
    consumer = asyncio.create_task(watcher.consume())
    browser = bytes(range(2, 18))
    watcher.gid_issued("dsp", browser)
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    await watcher.close()
    assert gid_field("dsp") in await store.hgetall(browser_record_key(browser))


async def test_a_check_the_store_cannot_judge_is_counted_as_dropped(tmp_path: Path) -> None:
    counted: list[tuple[str, Count, int]] = []
    gone = open_store(f"sqlite:///{tmp_path / 'gone.db'}")
    watcher = BuyerMonitor(
        gone,
        ExchangeSettings(),
        clock=FakeClock(),
        worker_id="w",
        on_count=lambda nid, what, n: counted.append((nid, what, n)),
    )
    await gone.close()  # every call now raises StoreUnavailable
    watcher.gid_issued("dsp", BROWSER)
    watcher.gid_issued("dsp", BROWSER)  # judged against the first: a violation all the same
    await watcher.drain()
    assert watcher.pending_checks == 0
    assert ("dsp", Count.CHECKS_DROPPED, 1) in counted
    assert ("dsp", Count.FREQUENCY_CAP_VIOLATIONS, 1) in counted


async def test_match_tags_are_tallied_and_counted_in_their_bucket(store: Store) -> None:
    clock = FakeClock(NOW - NOW % 600 + 590)  # ten seconds before a bucket turns
    counted: list[tuple[str, Count, int]] = []
    watcher = BuyerMonitor(
        store,
        ExchangeSettings(),
        clock=clock,
        worker_id="w",
        on_count=lambda nid, what, n: counted.append((nid, what, n)),
    )
    for i in range(3):
        watcher.gid_issued("dsp", bytes([i + 1]) * 16)
    assert counted == []  # a plain int until folded
    clock.advance(20)  # the next bucket: the tally so far is counted in its own
    watcher.gid_issued("dsp", bytes([9]) * 16)
    assert counted == [("dsp", Count.MATCH_TAGS, 3)]
    watcher.fold()
    assert counted[-1] == ("dsp", Count.MATCH_TAGS, 1)
    watcher.gid_issued("dsp", bytes([10]) * 16)
    assert (await watcher.stats("dsp")).counts[Count.MATCH_TAGS] == 5  # stats folds first
    clock.advance(DAY - 15)  # the first bucket has left the window, the second not
    assert (await watcher.stats("dsp")).counts[Count.MATCH_TAGS] == 2
    await watcher.close()
