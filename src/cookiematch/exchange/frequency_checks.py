"""Frequency-capping checks: recorded on the request path, applied in bulk off it.

A gid redirected to buyer X for browser B (a match tag, or a pixel match that came back) is
recorded in plain dicts (per buyer, the browser's first time): no store call, no asyncio
object, a dict look-up and an int. Two events for one pair before the batch is applied are
coalesced into one entry, and the later one, when it is a match tag within
``match_expiry_days`` of the one before, is counted as a violation right there: coalescing
loses no check.

``apply`` takes the whole batch and applies it in slices of ``SLICE_PAIRS`` pairs of one
buyer, one store call per slice, one slice after another (several at once only for a batch
late for its ``PACE``): ``hswap_many`` writes the new ``gid:<nid>`` times into the
browser records (``br:``) and answers the times they held before. The first event of a pair
is judged against the recent window (the times this worker wrote for pairs it saw lately:
per buyer, a dict of browsers to times in two generations, the older dropped whole when the
newer holds ``recent / 2`` pairs; no object per pair for the garbage collector to track, and
forgetting is one assignment, not a walk): a time there within the expiry is a violation;
otherwise against the time the record held, which other workers write as well. ``created``
(a cookie just set) is written and the ``push:<nid>`` field of a returned push deleted after
the slices. Between two store calls the event loop serves requests: one slice is a bounded
piece of Python work, never the whole second's batch at once.

Bounds: at most ``max_pending`` pairs wait (a new pair beyond that is refused, and the caller
counts it as dropped); ``apply`` is due early once ``flush_at`` pairs wait. A crash (kill -9)
loses what was recorded since the last ``apply``: at most about a second of match tags. These
are monitoring figures, not acknowledged writes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice

from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.exchange.browser_record import (
    CREATED,
    browser_record_key,
    gid_field,
    push_field,
    seconds,
)
from cookiematch.exchange.model import ExchangeSettings
from cookiematch.storage.base import FieldWrite, Store

MAX_PENDING_PAIRS = 100_000
"""(buyer, browser) pairs waiting to be applied, beyond which a new pair is dropped (counted)."""
FLUSH_AT_PAIRS = 20_000
"""Waiting pairs that make the batch due before its second is over."""
RECENT_PAIRS = 65_536
"""Pairs whose last written time this worker remembers at most (the recent window: the
``RECENT_PAIRS / 2`` most recent at least)."""
SLICE_PAIRS = 256
"""Pairs applied per slice: the event loop runs other work between two slices."""
PACE = 0.5
"""The share of the time a batch took to record that its slices may take one after another:
each is sent once the one before it is answered, so the checks' process and the store never
both work at once, which keeps the workers' tail latency down. A batch that, at its slices'
pace so far, would take longer goes on ``IN_FLIGHT`` slices ahead (the checks keep up with
what is recorded)."""
IN_FLIGHT = 4
"""Slices in the store at once behind a batch late for its ``PACE`` (SQLite's writer commits
them together, Redis pipelines them)."""

# The batch, built on the hot path from ints and dicts only (no object per event for the
# garbage collector to track): per buyer, per browser, the pair's first event, its time for a
# match tag or ``~time`` for a returned push; for a pair seen again, ``[last time, violations
# after the first event, a push came back]``.
_LAST, _VIOLATIONS, _PUSHED = range(3)
_First = dict[str, dict[bytes, int]]
_Times = dict[str, dict[bytes, int]]
"""Per buyer, per browser, a time (the recent window's generations)."""
_Again = dict[tuple[str, bytes], list[int]]
Batch = tuple[_First, _Again, dict[bytes, int], int, float]
"""A batch as ``take`` hands it over, plain dicts and numbers (a child process takes it as
is): per buyer each pair's first event, the pairs seen again, the browsers whose cookie was
just set (when), the events recorded, and the seconds since its first pair was."""
_Sent = tuple[str, list[tuple[int, int]], "asyncio.Task[list[dict[str, bytes]]]"]
"""A slice in the store: its buyer, its undecided first match tags, its ``hswap_many``."""


@dataclass(slots=True)
class Applied:
    """What one ``apply`` found, per buyer."""

    violations: dict[str, int] = field(default_factory=dict)
    unread: dict[str, int] = field(default_factory=dict)
    """Checks that could not be judged: their browser records could not be read."""
    checks: int = 0
    """Checks taken from the batch (the coalesced ones included)."""
    error: Exception | None = None
    """The store error that stopped the read or the write, if any."""


class FrequencyChecks:
    """The batch of one worker and its recent window."""

    def __init__(
        self,
        store: Store,
        settings: ExchangeSettings,
        *,
        max_pending: int = MAX_PENDING_PAIRS,
        flush_at: int = FLUSH_AT_PAIRS,
        recent: int = RECENT_PAIRS,
    ) -> None:
        self._store = store
        self._settings = settings
        self._expiry = settings.match_expiry_days * SECONDS_PER_DAY
        self._max_pending = max_pending
        self._flush_at = flush_at
        self._generation = max(1, recent // 2)
        self._first: _First = {}
        self._again: _Again = {}
        self._pairs = 0
        self._created: dict[bytes, int] = {}  # browsers whose cookie was just set: when
        self._recorded = 0  # events in the batch
        self._since = 0.0  # when the batch's first pair was recorded (monotonic)
        self._recent: _Times = {}  # the newer generation
        self._recent_pairs = 0  # pairs written into it
        self._older: _Times = {}
        self.due = asyncio.Event()
        """Set once ``flush_at`` pairs wait."""

    @property
    def pending(self) -> int:
        """Checks recorded and not yet applied."""
        return self._recorded

    def record(
        self, nid: str, browser_id: bytes, at: int, *, push: bool = False, new_cookie: bool = False
    ) -> bool:
        """A gid reached ``nid`` for the browser at ``at`` (``push``: a pixel match came back,
        else a match tag). False when the batch is full: the check is dropped."""
        first = self._first.get(nid)
        if first is None:
            first = self._first[nid] = {}
        seen = first.get(browser_id)
        if seen is None:
            if self._pairs >= self._max_pending:
                return False
            if not self._pairs:
                self._since = time.monotonic()
            first[browser_id] = ~at if push else at
            self._pairs += 1
            if self._pairs == self._flush_at:
                self.due.set()
        else:
            again = self._again.get((nid, browser_id))
            if again is None:
                again = self._again[(nid, browser_id)] = [seen if seen >= 0 else ~seen, 0, 0]
            if not push and at - again[_LAST] < self._expiry:
                again[_VIOLATIONS] += 1
            again[_LAST] = at
            if push:
                again[_PUSHED] = 1
        if new_cookie:
            self._created[browser_id] = at
        self._recorded += 1
        return True

    def take(self) -> Batch:
        """The batch recorded so far; what is recorded next goes into a new one."""
        span = time.monotonic() - self._since if self._pairs else 0.0
        batch = (self._first, self._again, self._created, self._recorded, span)
        self._first, self._again, self._created = {}, {}, {}
        self._recorded = self._pairs = 0
        self.due.clear()
        return batch

    async def apply(self) -> Applied:
        """Apply the batch recorded so far (``apply_batch(take())``)."""
        return await self.apply_batch(self.take())

    async def apply_batch(self, batch: Batch) -> Applied:
        """Apply ``batch``, in slices of ``SLICE_PAIRS`` pairs of one buyer:
        per slice one store call (``hswap_many``) writes the pairs' last times and answers
        what the records held before, against which the first match tags the recent window
        cannot judge are judged. A slice is sent once the one before it is answered, or, once
        the batch is late for its ``PACE``, while up to ``IN_FLIGHT`` before it are in the
        store; the loop runs other work meanwhile. A store error is not raised
        but returned in ``error``, with the violations found; once it happened no new slice
        is sent, and the first checks of pairs whose records could not be read are counted
        in ``unread``."""
        first, again, created, recorded, span = batch
        found = Applied(checks=recorded)
        keys: dict[bytes, str] = {}
        pushes: dict[str, list[str]] = {}
        sent: deque[_Sent] = deque()
        loop = asyncio.get_running_loop()
        slices = sum(-(-len(browsers) // SLICE_PAIRS) for browsers in first.values())
        budget, started, judged, late = PACE * span, time.monotonic(), 0, False
        for nid, browsers in first.items():
            pairs = iter(browsers.items())  # (no list of them: the iterator reuses its tuple)
            for _ in range(0, len(browsers), SLICE_PAIRS):
                undecided, writes = self._judge_slice(
                    nid, islice(pairs, SLICE_PAIRS), again, keys, pushes, found
                )
                if found.error is None:
                    swap = loop.create_task(self._store.hswap_many(writes))
                    sent.append((nid, undecided, swap))
                    judged += 1
                    late = late or (time.monotonic() - started) * slices > budget * judged
                    if len(sent) > (IN_FLIGHT if late else 0):
                        await self._judge_held(sent.popleft(), found)
                else:
                    found.unread[nid] = found.unread.get(nid, 0) + len(undecided)
                    await asyncio.sleep(0)  # the loop's other work between slices
        while sent:
            await self._judge_held(sent.popleft(), found)
        if found.error is None:
            await self._write_rest(created, keys, pushes, found)
        return found

    async def _judge_held(self, sent: _Sent, found: Applied) -> None:
        """Wait for a slice's store call and judge its undecided first match tags against
        what the records held (after a store error: count them as unread)."""
        nid, undecided, swap = sent
        try:
            held = await swap
        except Exception as exc:
            if found.error is None:
                found.error = exc
            found.unread[nid] = found.unread.get(nid, 0) + len(undecided)
            return
        name, expiry, count = gid_field(nid), self._expiry, 0
        for position, at in undecided:
            last = held[position].get(name)
            if last is not None and last.isdigit() and at - int(last) < expiry:
                count += 1
        if count:
            found.violations[nid] = found.violations.get(nid, 0) + count

    def _judge_slice(
        self,
        nid: str,
        pairs: Iterable[tuple[bytes, int]],
        again: _Again,
        keys: dict[bytes, str],
        pushes: dict[str, list[str]],
        found: Applied,
    ) -> tuple[list[tuple[int, int]], list[FieldWrite]]:
        """One pass over a slice of one buyer's pairs: count the violations the batch and the
        recent window show, remember each pair's last time, and return the writes of the last
        times and the first match tags left to judge against what the store held (``(their
        write's position, time)``); the ``push:`` fields of returned pushes go into
        ``pushes``."""
        self._age_recent()
        expiry = self._expiry
        recent = self._recent.get(nid)
        if recent is None:
            recent = self._recent[nid] = {}
        older = self._older.get(nid)
        name = gid_field(nid)
        undecided: list[tuple[int, int]] = []
        writes: list[FieldWrite] = []
        added = len(recent)
        count = 0
        time_of, fields = -1, {name: b""}  # one mapping per second, shared by its writes
        for browser, at in pairs:
            key = keys.get(browser)
            if key is None:
                key = keys[browser] = browser_record_key(browser)
            later = again.get((nid, browser)) if again else None
            if at >= 0:  # a match tag (a returned push has no check of its own)
                last = recent.get(browser)
                if last is None and older is not None:
                    last = older.get(browser)
                if last is not None and at - last < expiry:
                    count += 1
                else:
                    undecided.append((len(writes), at))
            if later is None:
                newest = at if at >= 0 else ~at
            else:
                newest = later[_LAST]
                count += later[_VIOLATIONS]
            recent[browser] = newest
            if newest != time_of:
                time_of, fields = newest, {name: seconds(newest)}
            writes.append((key, fields, expiry))
            if at < 0 or (later is not None and later[_PUSHED]):
                pushes.setdefault(key, []).append(push_field(nid))
        self._recent_pairs += len(recent) - added
        if count:
            found.violations[nid] = found.violations.get(nid, 0) + count
        return undecided, writes

    def _age_recent(self) -> None:
        """Once the newer generation holds its share of pairs, it becomes the older one (the
        older one before it is forgotten whole)."""
        if self._recent_pairs >= self._generation:
            self._older, self._recent, self._recent_pairs = self._recent, {}, 0

    async def _write_rest(
        self,
        created: dict[bytes, int],
        keys: dict[bytes, str],
        pushes: dict[str, list[str]],
        found: Applied,
    ) -> None:
        """The ``created`` times of cookies just set and the deletion of returned pushes'
        fields, in slices as well."""
        max_age = self._settings.cookie_max_age_days * SECONDS_PER_DAY
        writes: list[FieldWrite] = []
        for browser, at in created.items():
            key = keys.get(browser) or browser_record_key(browser)
            writes.append((key, {CREATED: seconds(at)}, max_age))
        deletions = list(pushes.items())
        try:
            for start in range(0, max(len(writes), len(deletions)), SLICE_PAIRS):
                part = writes[start : start + SLICE_PAIRS]
                await asyncio.gather(
                    *([self._store.hset_many(part)] if part else []),
                    *(
                        self._store.hdel(key, fields)
                        for key, fields in deletions[start : start + SLICE_PAIRS]
                    ),
                )
        except Exception as exc:
            found.error = exc
