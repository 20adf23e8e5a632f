"""Enforcement: what the exchange does about a buyer that breaks the document's rules.

The seed monitors frequency capping ("reserves the right to interrupt the free service in case
of violation") and the pixel-match response rate. Over the monitoring window
(``monitoring.py``), a buyer whose frequency-capping violations per match tag exceed
``frequency_cap_violation_rate`` (once ``min_match_tags`` were counted), or whose pixel-match
response rate is below ``pixel_match_response_rate_below``, gets the actions configured for
that rule (``[exchange.enforcement]``, or the buyer's own ``enforcement`` table):

    alert                   the gauge cookiematch_buyer_enforcement{nid,action} only
    throttle                its match tags limited to throttle_factor of its rate
                            (max_match_tags_per_second, else the rate it was seen to send)
    suspend_pixel_matching  no pixel match offered to it

One worker of the fleet (a lease) evaluates every ``enforcement_interval_seconds`` and writes
each buyer's state in the field map ``enforcement`` (field: the nid); every worker reads it
every ``RELOAD_SECONDS`` and applies it, so it survives restarts and reaches every instance.
Actions end at the first evaluation that finds their rule kept; while a rule cannot be judged
(too few match tags or pushes in the window: a buyer whose pixel matching is suspended gets no
pushes at all) the actions of a rule found broken hold. An operator's override (admin API)
replaces the evaluation for that buyer until it is removed; overrides live in their own field
map, ``enforcement:overrides``, which the evaluation never writes (only drops an override of a
buyer gone for ``STALE_OVERRIDE_SECONDS``), so an override set while an evaluation runs is
never overwritten. (An override in ``enforcement`` itself, as earlier versions stored it, is
still read as one.)
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing
from collections.abc import Callable, Mapping, Sequence

import msgspec

from cookiematch.clock import Clock
from cookiematch.errors import LeaseLost, StoreUnavailable
from cookiematch.exchange.model import Action, Buyer, Enforcement, Strict
from cookiematch.exchange.monitoring import BuyerMonitor, BuyerStats, Count
from cookiematch.exchange.rate_limit import SharedRateLimit
from cookiematch.storage.base import Store
from cookiematch.storage.lease import Lease

log = logging.getLogger(__name__)

ACTIONS: tuple[Action, ...] = typing.get_args(Action)
STATES_KEY = "enforcement"
OVERRIDES_KEY = "enforcement:overrides"
LEASE_KEY = "lease:enforcement"
RELOAD_SECONDS = 1.0
MIN_THROTTLED_BASE = 1.0
"""A buyer throttled without ``max_match_tags_per_second`` is limited to ``throttle_factor``
of the match tags per second it sent over the window, or of this, whichever is higher."""
OPERATOR_REASON = "set by an operator"
STALE_OVERRIDE_SECONDS = 300.0
"""An override of a buyer this worker does not know is dropped once this old (a buyer just
created on another worker may not have reached this worker's list yet)."""


class EnforcementState(Strict, frozen=True, kw_only=True):
    """A buyer's active actions, since when (unix seconds) and why; kept in the store."""

    actions: tuple[Action, ...] = ()
    since: float
    reasons: tuple[str, ...] = ()
    override: bool = False  # set by an operator: the evaluation leaves it alone
    observed_match_tags_per_second: float = 0.0  # over the window, when the actions began


class EnforcementOverride(Strict, frozen=True):
    """The body of ``PUT /admin/v1/buyers/{nid}/enforcement`` (``actions = []`` pardons)."""

    actions: tuple[Action, ...]
    reason: str = OPERATOR_REASON


FREQUENCY_CAPPING = "frequency-capping violations"
RESPONSE_RATE = "pixel-match response rate"


class Finding(typing.NamedTuple):
    """One rule over the window: broken, kept, or not judged (``broken is None``: too little
    evidence); its actions, and why (which begins with the rule's name)."""

    rule: str  # FREQUENCY_CAPPING or RESPONSE_RATE
    broken: bool | None
    actions: tuple[Action, ...]
    why: str


def judge(stats: BuyerStats, rules: Enforcement) -> tuple[Finding, Finding]:
    """Each rule over ``stats``, in rule order."""
    tags = stats.counts.get(Count.MATCH_TAGS, 0)
    violations = stats.counts.get(Count.FREQUENCY_CAP_VIOLATIONS, 0)
    limit = rules.frequency_cap_violation_rate
    capping = Finding(
        FREQUENCY_CAPPING,
        None if tags < rules.min_match_tags else violations / tags > limit,
        rules.on_frequency_cap_violations,
        f"{FREQUENCY_CAPPING} {violations}/{tags} match tags > {limit}",
    )
    rate, below = stats.response_rate, rules.pixel_match_response_rate_below
    responses = Finding(
        RESPONSE_RATE,
        None if rate is None else rate < below,
        rules.on_low_response_rate,
        f"{RESPONSE_RATE} {rate or 0:.3f} < {below}",
    )
    return capping, responses


def calls_for(finding: Finding, current: EnforcementState | None) -> list[tuple[Action, str]]:
    """The actions ``finding`` calls for and why: a broken rule's; a rule not judged keeps
    what it called for in ``current`` (its reason of then), so that an action which removes
    the evidence (no pushes while pixel matching is suspended) does not end itself."""
    if finding.broken:
        return [(action, finding.why) for action in finding.actions]
    if finding.broken is None and current is not None:
        was = [why for why in current.reasons if why.startswith(finding.rule)]
        return [(action, why) for why in was[:1] for action in finding.actions]
    return []


class Enforcer:
    """Evaluates the rules (when it holds the lease), keeps every buyer's state for this
    worker, and applies it: ``admit_match_tag`` and ``pixel_matching_suspended`` are the
    request path's questions (no store round trip)."""

    def __init__(
        self,
        store: Store,
        monitor: BuyerMonitor,
        limiter: SharedRateLimit,
        rules: Enforcement,
        buyers: Callable[[], Sequence[Buyer]],
        *,
        holder: str,
        interval: float,
        clock: Clock = time.time,
        on_states: Callable[[Sequence[str], Mapping[str, EnforcementState]], None] | None = None,
    ) -> None:
        self._store = store
        self._monitor = monitor
        self._limiter = limiter
        self._rules = rules
        self._buyers = buyers
        self._clock = clock
        self._on_states = on_states
        self._evaluated: dict[str, EnforcementState] = {}  # STATES_KEY
        self._overrides: dict[str, EnforcementState] = {}  # OVERRIDES_KEY
        self._states: dict[str, EnforcementState] = {}  # what applies: overrides win
        self._interval = interval
        self.lease = Lease(store, LEASE_KEY, holder, ttl=3 * interval)

    def rules(self, buyer: Buyer) -> Enforcement:
        return buyer.enforcement if buyer.enforcement is not None else self._rules

    # -- the request path -------------------------------------------------------------

    def state(self, nid: str) -> EnforcementState | None:
        return self._states.get(nid)

    def match_tag_rate(self, buyer: Buyer) -> float | None:
        """The buyer's match-tag limit now (None: unlimited), with a throttle applied."""
        limit = buyer.max_match_tags_per_second
        state = self._states.get(buyer.nid) if self._states else None
        if state is None or "throttle" not in state.actions:
            return limit
        base = limit or max(MIN_THROTTLED_BASE, state.observed_match_tags_per_second)
        return base * self.rules(buyer).throttle_factor

    def limits_match_tags(self, buyer: Buyer) -> bool:
        """Whether ``buyer``'s match tags are under a limit now (``admit_match_tag`` consumes
        its allowance; this does not)."""
        return self.match_tag_rate(buyer) is not None

    def admit_match_tag(self, buyer: Buyer) -> bool:
        """Whether a match tag of ``buyer`` fits under its limit (shared by every worker)."""
        rate = self.match_tag_rate(buyer)
        return rate is None or self._limiter.allow(buyer.nid, rate)

    def describe(self, buyer: Buyer) -> dict[str, object]:
        """The ``enforcement`` object of the admin API: active actions, since, why, and the
        match-tag limit they leave."""
        state = self._states.get(buyer.nid)
        return {
            "actions": list(state.actions) if state else [],
            "since": state.since if state else None,
            "reasons": list(state.reasons) if state else [],
            "override": state.override if state else False,
            "max_match_tags_per_second": self.match_tag_rate(buyer),
        }

    def pixel_matching_suspended(self, nid: str) -> bool:
        state = self._states.get(nid) if self._states else None
        return state is not None and "suspend_pixel_matching" in state.actions

    def limits(self) -> dict[str, float]:
        """The limited buyers and their limits (what the limiter syncs)."""
        found: dict[str, float] = {}
        for buyer in self._buyers():
            rate = self.match_tag_rate(buyer)
            if rate is not None:
                found[buyer.nid] = rate
        return found

    # -- the store --------------------------------------------------------------------

    async def reload(self) -> None:
        """Read every buyer's state (written by the evaluating worker or an operator)."""
        evaluated, overrides = await self._store.hgetall_many([STATES_KEY, OVERRIDES_KEY])
        self._evaluated = _decode(evaluated)
        self._overrides = _decode(overrides)
        self._merge()
        if self._on_states is not None:
            self._on_states([b.nid for b in self._buyers()], self._states)

    def _merge(self) -> None:
        self._states = {**self._evaluated, **self._overrides}

    async def _write(self, key: str, nid: str, state: EnforcementState | None) -> None:
        kept = self._overrides if key == OVERRIDES_KEY else self._evaluated
        if state is None:
            await self._store.hdel(key, [nid])
            kept.pop(nid, None)
        else:
            await self._store.hset(key, {nid: msgspec.json.encode(state)})
            kept[nid] = state
        self._merge()

    async def override(self, buyer: Buyer, order: EnforcementOverride) -> EnforcementState:
        """An operator's actions for ``buyer``, kept until ``resume``."""
        stats = await self._monitor.stats(buyer.nid)
        state = EnforcementState(
            actions=tuple(dict.fromkeys(order.actions)),
            since=self._clock(),
            reasons=(order.reason,),
            override=True,
            observed_match_tags_per_second=_observed(stats),
        )
        await self._write(OVERRIDES_KEY, buyer.nid, state)
        return state

    async def resume(self, nid: str) -> None:
        """Drop the buyer's state (an override too): the next evaluation decides again."""
        await self._write(OVERRIDES_KEY, nid, None)
        await self._write(STATES_KEY, nid, None)

    # -- evaluation ---------------------------------------------------------------------

    async def evaluate(self) -> None:
        """Judge every buyer over the window; write the states that change (in
        ``STATES_KEY`` only: a buyer under an override is skipped, and an override set
        meanwhile wins over what this writes)."""
        await self.reload()
        buyers = {b.nid: b for b in self._buyers()}
        for nid in [n for n in self._evaluated if n not in buyers]:
            await self._write(STATES_KEY, nid, None)
        stale = self._clock() - STALE_OVERRIDE_SECONDS
        for nid, state in list(self._overrides.items()):
            if nid not in buyers and state.since < stale:
                await self._write(OVERRIDES_KEY, nid, None)
        for nid, buyer in buyers.items():
            current = self._states.get(nid)
            if current is not None and current.override:
                continue
            stats = await self._monitor.stats(nid)
            rules = judge(stats, self.rules(buyer))
            found = [f for rule in rules for f in calls_for(rule, current)]
            actions = tuple(a for a in ACTIONS if any(a == f[0] for f in found))
            if not actions:
                if current is not None:
                    log.info("enforcement of %r ended", nid)
                    await self._write(STATES_KEY, nid, None)
                continue
            if current is not None and current.actions == actions:
                continue
            reasons = tuple(dict.fromkeys(why for _, why in found))
            log.warning("enforcement of %r: %s (%s)", nid, ", ".join(actions), "; ".join(reasons))
            state = EnforcementState(
                actions=actions,
                since=self._clock(),
                reasons=reasons,
                observed_match_tags_per_second=_observed(stats),
            )
            await self._write(STATES_KEY, nid, state)

    async def _evaluate_if_holder(self) -> None:
        try:
            if self.lease.held:
                await self.lease.renew()
            elif not await self.lease.claim():
                return
        except LeaseLost:
            return
        await self.evaluate()

    async def run(self) -> None:
        """Reload the states every ``RELOAD_SECONDS`` and evaluate every ``interval`` seconds
        while holding the lease, forever (one task per worker)."""
        every = self._interval
        since_evaluation = every
        while True:
            try:
                if since_evaluation >= every:
                    since_evaluation = 0.0
                    await self._evaluate_if_holder()
                await self.reload()
            except StoreUnavailable:  # the store's guard logs an outage once
                pass
            except Exception as exc:
                log.warning("enforcement failed; keeping the last states: %s", exc)
            await asyncio.sleep(RELOAD_SECONDS)
            since_evaluation += RELOAD_SECONDS

    async def close(self) -> None:
        """Give the lease back, so that another worker evaluates at once."""
        try:
            await self.lease.release()
        except Exception as exc:
            log.debug("enforcement lease not released: %s", exc)


def _decode(fields: Mapping[str, bytes]) -> dict[str, EnforcementState]:
    states: dict[str, EnforcementState] = {}
    for nid, raw in fields.items():
        try:
            states[nid] = msgspec.json.decode(raw, type=EnforcementState)
        except msgspec.DecodeError:
            log.warning("enforcement state of %r is unreadable; ignored", nid)
    return states


def _observed(stats: BuyerStats) -> float:
    return round(stats.counts.get(Count.MATCH_TAGS, 0) / stats.window_seconds, 6)
