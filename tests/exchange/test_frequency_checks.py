"""Frequency-capping checks applied in bulk, on every backend: no check is lost and every
violation is counted exactly, whatever the batches coalesce and whichever worker saw the
browser before."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from cookiematch.exchange.browser_record import browser_record_key, gid_field, push_field
from cookiematch.exchange.frequency_checks import IN_FLIGHT, SLICE_PAIRS, FrequencyChecks
from cookiematch.exchange.model import ExchangeSettings
from cookiematch.exchange.monitoring import BuyerMonitor, Count
from cookiematch.storage import Store
from cookiematch.storage.base import FieldWrite

from support.clock import FakeClock
from support.stores import backend_store, shared_cluster, shared_redis  # noqa: F401

DAY = 86400
BROWSERS = 300
ROUNDS = 8
ROUND_DAYS = 5  # with match_expiry_days = 14: a pair seen 1 or 2 rounds ago is still fresh
BUYERS = ("dsp", "dsp2")


class Reference:
    """The rule applied one event at a time: a match tag within the expiry of the pair's
    last gid (a match tag's or a returned push's) is a violation."""

    def __init__(self, expiry: int) -> None:
        self.expiry = expiry
        self.last: dict[tuple[str, bytes], int] = {}
        self.violations: Counter[str] = Counter()

    def event(self, nid: str, browser: bytes, at: int, *, push: bool) -> None:
        last = self.last.get((nid, browser))
        if not push and last is not None and at - last < self.expiry:
            self.violations[nid] += 1
        self.last[(nid, browser)] = at


class Counted:
    """What monitors counted, by count and buyer (their ``on_count``)."""

    def __init__(self) -> None:
        self.by: dict[Count, Counter[str]] = {count: Counter() for count in Count}

    def __call__(self, nid: str, what: Count, n: int) -> None:
        self.by[what][nid] += n


async def test_every_violation_is_counted_exactly(backend_store: Store) -> None:  # noqa: F811
    clock = FakeClock()
    settings = ExchangeSettings()
    counted = Counted()
    workers = [
        BuyerMonitor(backend_store, settings, clock=clock, worker_id=w, on_count=counted)
        for w in ("w1", "w2")
    ]
    await play_rounds(workers, clock, settings, counted, backend_store)


async def play_rounds(
    workers: list[BuyerMonitor],
    clock: FakeClock,
    settings: ExchangeSettings,
    counted: Counted,
    store: Store,
) -> None:
    """Rounds of match tags and returned pushes over ``workers``, each round drained: every
    event counted, no check dropped, every violation counted as the one-event-at-a-time rule
    counts it, and the last times in the browser records."""
    reference = Reference(settings.match_expiry_days * DAY)
    browsers = [i.to_bytes(2, "big") * 8 for i in range(BROWSERS)]
    rng = random.Random(19)
    events = 0
    for _ in range(ROUNDS):
        # within a round each browser is seen by one worker, up to three times per buyer
        for browser in rng.sample(browsers, BROWSERS // 2):
            worker = rng.choice(workers)
            for nid in rng.sample(BUYERS, rng.randint(1, 2)):
                for _ in range(rng.randint(1, 3)):
                    clock.advance(rng.randint(0, 2))
                    push = rng.random() < 0.2
                    at = int(clock())
                    if push:
                        worker.push_returned(nid, browser)
                    else:
                        worker.gid_issued(nid, browser)
                    reference.event(nid, browser, at, push=push)
                    events += 1
        for worker in workers:
            await worker.drain()
            assert worker.pending_checks == 0
        clock.advance(ROUND_DAYS * DAY)
    by = counted.by
    assert sum(by[Count.MATCH_TAGS].values()) + sum(by[Count.PUSHES_RETURNED].values()) == events
    assert not by[Count.CHECKS_DROPPED]
    assert reference.violations.total() > 100  # the rounds do make repeats
    assert by[Count.FREQUENCY_CAP_VIOLATIONS] == reference.violations
    for (nid, browser), at in list(reference.last.items())[:50]:
        record = await store.hgetall(browser_record_key(browser))
        assert record[gid_field(nid)] == str(at).encode()


async def test_a_returned_push_clears_its_pending_field_and_freshens_the_match(
    backend_store: Store,  # noqa: F811
) -> None:
    clock = FakeClock()
    watcher = BuyerMonitor(backend_store, ExchangeSettings(), clock=clock, worker_id="w")
    browser = bytes(range(16))
    key = browser_record_key(browser)
    await backend_store.hset(key, {push_field("dsp"): b"%d" % clock()}, ttl=3600)
    watcher.push_returned("dsp", browser)
    clock.advance(60)
    watcher.gid_issued("dsp", browser, new_cookie=True)
    await watcher.drain()
    record = await backend_store.hgetall(key)
    assert push_field("dsp") not in record
    assert record[gid_field("dsp")] == b"%d" % clock()
    assert record["created"] == b"%d" % clock()
    stats = await watcher.stats("dsp")
    assert stats.counts[Count.FREQUENCY_CAP_VIOLATIONS] == 1


async def test_a_pair_the_recent_window_forgot_is_judged_against_the_store(
    store: Store,
) -> None:
    """With a window of 8 pairs (two generations of 4; a generation ages between slices) and
    three slices of browsers a round, the first slices' pairs are forgotten by the next round:
    their checks are judged against the browser records, and every violation is still counted
    once."""
    settings = ExchangeSettings()
    checks = FrequencyChecks(store, settings, recent=8)
    reference = Reference(settings.match_expiry_days * DAY)
    count = 2 * SLICE_PAIRS + 88
    browsers = [i.to_bytes(2, "big") * 8 for i in range(count)]
    at = 1_700_000_000
    violations = 0
    for round_ in range(3):
        for browser in browsers:
            at += 1
            assert checks.record("dsp", browser, at)
            reference.event("dsp", browser, at, push=False)
        applied = await checks.apply()
        assert applied.error is None and not applied.unread
        violations += applied.violations.get("dsp", 0)
        assert violations == reference.violations["dsp"] == count * round_


class SwapsInFlight:
    """A store whose ``hswap_many`` calls are counted while in flight (the rest delegated)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.in_flight = 0
        self.most = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def hswap_many(self, items: Sequence[FieldWrite]) -> list[dict[str, bytes]]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            return await self.store.hswap_many(items)
        finally:
            self.in_flight -= 1


async def test_a_batch_on_pace_sends_one_slice_at_a_time(backend_store: Store) -> None:  # noqa: F811
    """A batch with time to spare (its slices within ``PACE`` of the seconds it was recorded
    over) sends a slice once the one before it is answered; a batch recorded in no time is
    late at once and keeps up to ``IN_FLIGHT`` slices in the store. Every check is applied
    and judged either way."""
    swaps = SwapsInFlight(backend_store)
    checks = FrequencyChecks(swaps, ExchangeSettings())  # type: ignore[arg-type]
    at = 1_700_000_000
    for span, most in ((3600.0, 1), (0.0, IN_FLIGHT + 1)):
        swaps.most = 0
        browsers = [random.randbytes(16) for _ in range(6 * SLICE_PAIRS)]
        for browser in browsers:
            assert checks.record("dsp", browser, at)
        first, again, created, recorded, _ = checks.take()
        applied = await checks.apply_batch((first, again, created, recorded, span))
        assert applied.error is None and not applied.unread
        assert applied.checks == len(browsers) and not applied.violations
        assert swaps.most == most, (span, swaps.most)
        for browser in browsers[:: SLICE_PAIRS // 2]:
            record = await backend_store.hgetall(browser_record_key(browser))
            assert record[gid_field("dsp")] == str(at).encode()
        at += 60
