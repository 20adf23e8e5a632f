"""Enforcement of the monitored rules on a real SQLite store: actions switch on and off at
the thresholds, an operator overrides them, every worker (and a restarted one) applies them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import msgspec
import pytest

from cookiematch.exchange.enforcement import (
    OVERRIDES_KEY,
    STALE_OVERRIDE_SECONDS,
    STATES_KEY,
    EnforcementOverride,
    EnforcementState,
    Enforcer,
    judge,
)
from cookiematch.exchange.model import Buyer, Enforcement, ExchangeSettings
from cookiematch.exchange.monitoring import (
    BUCKET_SECONDS,
    MIN_PUSHES_FOR_RATE,
    WINDOW_SECONDS,
    BuyerMonitor,
    BuyerStats,
    Count,
)
from cookiematch.exchange.rate_limit import SharedRateLimit
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.storage import Store

from support.clock import FakeClock

RULES = Enforcement(
    frequency_cap_violation_rate=0.1,
    min_match_tags=10,
    on_frequency_cap_violations=("alert", "throttle"),
    on_low_response_rate=("suspend_pixel_matching",),
    throttle_factor=0.5,
)
DSP = Buyer("dsp", RedirectTemplate.compile("http://dsp.example/m?id="))
LIMITED = Buyer(
    "limited", RedirectTemplate.compile("http://l.example/m?id="), max_match_tags_per_second=40
)


def stats(**counts: int) -> BuyerStats:
    return BuyerStats("dsp", 86400, dict(counts))


def test_judge_at_the_thresholds() -> None:
    def broken(**counts: int) -> tuple[bool | None, bool | None]:
        capping, responses = judge(stats(**counts), RULES)
        return capping.broken, responses.broken

    assert broken(match_tags=9, frequency_cap_violations=9) == (None, None)  # too few
    assert broken(match_tags=100, frequency_cap_violations=10) == (False, None)  # not above
    capping, _ = judge(stats(match_tags=100, frequency_cap_violations=11), RULES)
    assert capping.broken and capping.actions == ("alert", "throttle")
    assert capping.why.startswith("frequency-capping violations 11/100")
    issued = MIN_PUSHES_FOR_RATE * 10
    assert broken(pushes_issued=issued, pushes_returned=issued * 9 // 10) == (None, False)
    _, low = judge(stats(pushes_issued=issued, pushes_returned=issued * 9 // 10 - 1), RULES)
    assert low.broken and low.actions == ("suspend_pixel_matching",)
    assert broken(pushes_issued=MIN_PUSHES_FOR_RATE - 1) == (None, None)  # not judged yet


class Worker:
    """One worker's monitor, limiter and enforcer over the shared store."""

    def __init__(
        self,
        store: Store,
        clock: FakeClock,
        name: str,
        buyers: Sequence[Buyer],
        monitor: type[BuyerMonitor] = BuyerMonitor,
    ) -> None:
        self.monitor = monitor(store, ExchangeSettings(), clock=clock, worker_id=name)
        self.limiter = SharedRateLimit(store, clock=clock, worker_id=name)
        self.enforcer = Enforcer(
            store,
            self.monitor,
            self.limiter,
            RULES,
            lambda: buyers,
            holder=name,
            interval=10.0,
            clock=clock,
            on_states=self.seen,
        )
        self.gauge: dict[str, tuple[str, ...]] = {}

    def seen(self, nids: Sequence[str], states: dict[str, EnforcementState]) -> None:
        self.gauge = {nid: states[nid].actions if nid in states else () for nid in nids}


async def test_actions_switch_on_and_off_and_reach_every_worker(store: Store) -> None:
    clock = FakeClock()
    buyers = [DSP, LIMITED]
    one, two = Worker(store, clock, "w1", buyers), Worker(store, clock, "w2", buyers)
    one.monitor.count("dsp", Count.MATCH_TAGS, 20)
    two.monitor.count("dsp", Count.FREQUENCY_CAP_VIOLATIONS, 3)  # 3/20 > 0.1
    await two.monitor.flush()
    await one.enforcer.evaluate()
    state = one.enforcer.state("dsp")
    assert state is not None and state.actions == ("alert", "throttle")
    assert state.since == clock.now and not state.override
    assert one.enforcer.state("limited") is None

    await two.enforcer.reload()  # the other worker applies it
    assert two.gauge == {"dsp": ("alert", "throttle"), "limited": ()}
    # throttled without a configured limit: half of max(1/s, what it sent over the window)
    assert two.enforcer.match_tag_rate(DSP) == 0.5
    assert two.enforcer.limits() == {"dsp": 0.5, "limited": 40}
    assert [two.enforcer.admit_match_tag(DSP) for _ in range(3)] == [True, False, False]

    clock.advance(60)
    one.monitor.count("dsp", Count.MATCH_TAGS, 20)  # 3/40 <= 0.1: the rule is kept again
    await one.enforcer.evaluate()
    await two.enforcer.reload()
    assert two.enforcer.state("dsp") is None and two.gauge["dsp"] == ()
    assert two.enforcer.match_tag_rate(DSP) is None
    assert await store.hgetall(STATES_KEY) == {}


async def test_a_limited_buyer_is_throttled_to_a_fraction_of_its_limit(store: Store) -> None:
    clock = FakeClock()
    worker = Worker(store, clock, "w1", [LIMITED])
    worker.monitor.count("limited", Count.MATCH_TAGS, 10)
    worker.monitor.count("limited", Count.FREQUENCY_CAP_VIOLATIONS, 5)
    await worker.enforcer.evaluate()
    assert worker.enforcer.match_tag_rate(LIMITED) == 20
    assert worker.enforcer.describe(LIMITED)["max_match_tags_per_second"] == 20


async def test_low_response_rate_suspends_pixel_matching(store: Store) -> None:
    clock = FakeClock()
    worker = Worker(store, clock, "w1", [DSP])
    worker.monitor.count("dsp", Count.PUSHES_ISSUED, 100)
    worker.monitor.count("dsp", Count.PUSHES_RETURNED, 50)
    await worker.enforcer.evaluate()
    assert worker.enforcer.pixel_matching_suspended("dsp")
    assert worker.enforcer.match_tag_rate(DSP) is None  # not throttled by this rule


async def test_an_override_holds_until_removed_and_survives_a_restart(store: Store) -> None:
    clock = FakeClock()
    worker = Worker(store, clock, "w1", [DSP])
    worker.monitor.count("dsp", Count.MATCH_TAGS, 20)
    worker.monitor.count("dsp", Count.FREQUENCY_CAP_VIOLATIONS, 10)
    await worker.enforcer.evaluate()
    pardon = EnforcementOverride(actions=(), reason="checked with the buyer")
    await worker.enforcer.override(DSP, pardon)
    await worker.enforcer.evaluate()  # the rules are still broken: the override holds
    view = worker.enforcer.describe(DSP)
    assert view["actions"] == [] and view["override"] is True
    assert view["reasons"] == ["checked with the buyer"]

    restarted = Worker(store, clock, "w9", [DSP])
    await restarted.enforcer.reload()
    assert restarted.enforcer.describe(DSP) == view

    await restarted.enforcer.resume("dsp")  # back to the rules
    await restarted.enforcer.evaluate()
    again = restarted.enforcer.state("dsp")
    assert again is not None and again.actions == ("alert", "throttle") and not again.override


async def test_one_worker_evaluates_at_a_time(store: Store) -> None:
    clock = FakeClock()
    one, two = Worker(store, clock, "w1", [DSP]), Worker(store, clock, "w2", [DSP])
    assert await one.enforcer.lease.claim()
    assert not await two.enforcer.lease.claim()
    await one.enforcer.close()
    assert await two.enforcer.lease.claim()


async def test_states_of_deleted_buyers_are_dropped(store: Store) -> None:
    clock = FakeClock()
    buyers = [DSP]
    worker = Worker(store, clock, "w1", buyers)
    worker.monitor.count("dsp", Count.MATCH_TAGS, 20)
    worker.monitor.count("dsp", Count.FREQUENCY_CAP_VIOLATIONS, 10)
    await worker.enforcer.evaluate()
    await worker.enforcer.override(DSP, EnforcementOverride(actions=("alert",)))
    buyers.clear()
    await worker.enforcer.evaluate()
    assert await store.hgetall(STATES_KEY) == {}
    # an override is dropped only once old enough that its buyer cannot be on its way
    assert list(await store.hgetall(OVERRIDES_KEY)) == ["dsp"]
    clock.advance(STALE_OVERRIDE_SECONDS + 1)
    await worker.enforcer.evaluate()
    assert await store.hgetall(OVERRIDES_KEY) == {}


class RacedMonitor(BuyerMonitor):
    """A monitor during whose stats read an operator acts on another worker (``during``)."""

    during: Callable[[], Awaitable[object]] | None = None

    async def stats(self, nid: str, max_qps: float | None = None) -> BuyerStats:
        found = await super().stats(nid, max_qps)
        if self.during is not None:
            during, self.during = self.during, None
            await during()
        return found


@pytest.mark.parametrize("rules_broken", [True, False], ids=["write", "end"])
async def test_an_override_set_during_an_evaluation_is_kept(
    store: Store, rules_broken: bool
) -> None:
    clock = FakeClock()
    evaluator = Worker(store, clock, "w1", [DSP], monitor=RacedMonitor)
    operator = Worker(store, clock, "w2", [DSP])
    assert isinstance(evaluator.monitor, RacedMonitor)
    evaluator.monitor.count("dsp", Count.MATCH_TAGS, 20)
    evaluator.monitor.count("dsp", Count.FREQUENCY_CAP_VIOLATIONS, 10)
    if not rules_broken:  # a throttle the next evaluation would end
        await evaluator.enforcer.evaluate()
        clock.advance(WINDOW_SECONDS + BUCKET_SECONDS)
        evaluator.monitor.count("dsp", Count.MATCH_TAGS, 20)
    order = EnforcementOverride(actions=("suspend_pixel_matching",), reason="looked at it")
    evaluator.monitor.during = lambda: operator.enforcer.override(DSP, order)
    await evaluator.enforcer.evaluate()
    for worker in (evaluator, operator, Worker(store, clock, "w3", [DSP])):
        await worker.enforcer.reload()
        state = worker.enforcer.state("dsp")
        assert state is not None and state.override
        assert state.actions == ("suspend_pixel_matching",) and state.reasons == ("looked at it",)
    await evaluator.enforcer.evaluate()  # and the next evaluations leave it alone
    assert evaluator.enforcer.describe(DSP)["actions"] == ["suspend_pixel_matching"]


async def test_an_override_stored_by_an_earlier_version_still_holds(store: Store) -> None:
    clock = FakeClock()
    worker = Worker(store, clock, "w1", [DSP])
    earlier = EnforcementState(actions=(), since=clock.now, reasons=("pardoned",), override=True)
    await store.hset(STATES_KEY, {"dsp": msgspec.json.encode(earlier)})
    worker.monitor.count("dsp", Count.MATCH_TAGS, 20)
    worker.monitor.count("dsp", Count.FREQUENCY_CAP_VIOLATIONS, 10)
    await worker.enforcer.evaluate()
    assert worker.enforcer.state("dsp") == earlier
    await worker.enforcer.resume("dsp")
    await worker.enforcer.evaluate()
    again = worker.enforcer.state("dsp")
    assert again is not None and again.actions == ("alert", "throttle") and not again.override


async def test_a_suspension_holds_while_no_pushes_can_judge_it(store: Store) -> None:
    clock = FakeClock()
    worker = Worker(store, clock, "w1", [DSP])
    worker.monitor.count("dsp", Count.PUSHES_ISSUED, 100)
    worker.monitor.count("dsp", Count.PUSHES_RETURNED, 50)
    await worker.enforcer.evaluate()
    assert worker.enforcer.pixel_matching_suspended("dsp")
    began = worker.enforcer.state("dsp")
    # suspended, the buyer is offered no pushes: the window slides past the evidence
    clock.advance(WINDOW_SECONDS + BUCKET_SECONDS)
    worker.monitor.count("dsp", Count.PUSHES_ISSUED, MIN_PUSHES_FOR_RATE - 1)
    await worker.enforcer.evaluate()
    assert worker.enforcer.state("dsp") == began  # not judged: held, not ended
    # evidence that the rule is kept ends it
    worker.monitor.count("dsp", Count.PUSHES_ISSUED, 1)
    worker.monitor.count("dsp", Count.PUSHES_RETURNED, MIN_PUSHES_FOR_RATE)
    await worker.enforcer.evaluate()
    assert worker.enforcer.state("dsp") is None


async def test_only_the_unjudged_rule_holds(store: Store) -> None:
    clock = FakeClock()
    worker = Worker(store, clock, "w1", [DSP])
    worker.monitor.count("dsp", Count.PUSHES_ISSUED, 100)
    worker.monitor.count("dsp", Count.PUSHES_RETURNED, 50)
    worker.monitor.count("dsp", Count.MATCH_TAGS, 20)
    worker.monitor.count("dsp", Count.FREQUENCY_CAP_VIOLATIONS, 10)
    await worker.enforcer.evaluate()
    state = worker.enforcer.state("dsp")
    assert state is not None
    assert state.actions == ("alert", "throttle", "suspend_pixel_matching")
    clock.advance(WINDOW_SECONDS + BUCKET_SECONDS)
    worker.monitor.count("dsp", Count.MATCH_TAGS, 20)  # no violation: that rule is kept
    await worker.enforcer.evaluate()
    held = worker.enforcer.state("dsp")
    assert held is not None and held.actions == ("suspend_pixel_matching",)
    assert held.reasons == tuple(r for r in state.reasons if r.startswith("pixel-match"))
    clock.advance(WINDOW_SECONDS + BUCKET_SECONDS)  # nothing at all in the window
    await worker.enforcer.evaluate()
    assert worker.enforcer.state("dsp") == held
