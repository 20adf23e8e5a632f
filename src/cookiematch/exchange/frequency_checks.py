"""Frequency-capping checks: recorded on the request path, applied in bulk off it.

A gid redirected to buyer X for browser B (a match tag, or a pixel match that came back) is
recorded in plain dicts (per buyer, the browser's first time): no store call, no asyncio
object, a dict look-up and an int. Two events for one pair before the batch is applied are
coalesced into one entry, and the later one, when it is a match tag within
``match_expiry_days`` of the one before, is counted as a violation right there: coalescing
loses no check.

``apply`` takes the whole batch and applies it with two bulk store calls: one
``hgetall_many`` of the browser records (``br:``) it needs, one ``hset_many`` of the new
``gid:<nid>`` times (and ``created`` for a cookie that was just set); a returned push also
deletes its ``push:<nid>`` field. The first event of a pair is judged against the recent
window (the times this worker wrote for pairs it saw lately, a bounded LRU): a time there
within the expiry is a violation without a read; otherwise against the stored record, which
other workers write as well.

Bounds: at most ``max_pending`` pairs wait (a new pair beyond that is refused, and the caller
counts it as dropped); ``apply`` is due early once ``flush_at`` pairs wait. A crash (kill -9)
loses what was recorded since the last ``apply``: at most about a second of match tags. These
are monitoring figures, not acknowledged writes.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

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
"""Pairs whose last written time this worker remembers (the recent window, an LRU)."""

# The batch, built on the hot path from ints and dicts only (no object per event for the
# garbage collector to track): per buyer, per browser, the pair's first event, its time for a
# match tag or ``~time`` for a returned push; for a pair seen again, ``[last time, violations
# after the first event, a push came back]``.
_LAST, _VIOLATIONS, _PUSHED = range(3)
_First = dict[str, dict[bytes, int]]
_Again = dict[tuple[str, bytes], list[int]]


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
        self._recent_size = recent
        self._first: _First = {}
        self._again: _Again = {}
        self._pairs = 0
        self._created: dict[bytes, int] = {}  # browsers whose cookie was just set: when
        self._recorded = 0  # events in the batch
        self._recent: OrderedDict[tuple[str, bytes], int] = OrderedDict()
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

    async def apply(self) -> Applied:
        """Apply the batch recorded so far: one bulk read, one bulk write (plus the deletion
        of returned pushes' fields). The batch is taken first: what is recorded meanwhile
        waits for the next call. A store error is not raised but returned in ``error``, with
        the violations found before it; the first checks of pairs whose records could not be
        read are counted in ``unread``."""
        first, self._first = self._first, {}
        again, self._again = self._again, {}
        created, self._created = self._created, {}
        found = Applied(checks=self._recorded)
        self._recorded = self._pairs = 0
        self.due.clear()
        keys = {browser: "" for browsers in first.values() for browser in browsers}
        for browser in keys:
            keys[browser] = browser_record_key(browser)
        undecided = self._judge_from_memory(first, again, found)
        try:
            await self._judge_from_store(undecided, keys, found)
        except Exception as exc:
            for nid, _, _ in undecided:
                found.unread[nid] = found.unread.get(nid, 0) + 1
            found.error = exc
        gids, pushes = self._last_times(first, again, keys)
        if found.error is None:
            try:
                await self._write(gids, pushes, created, keys)
            except Exception as exc:
                found.error = exc
        return found

    def _judge_from_memory(
        self, first: _First, again: _Again, found: Applied
    ) -> list[tuple[str, bytes, int]]:
        """Count the violations the batch and the recent window show; the first match tags
        left to judge against the store: ``(nid, browser_id, time)``."""
        undecided: list[tuple[str, bytes, int]] = []
        violations = found.violations
        recent, expiry = self._recent, self._expiry
        for (nid, _), later in again.items():
            if later[_VIOLATIONS]:
                violations[nid] = violations.get(nid, 0) + later[_VIOLATIONS]
        for nid, browsers in first.items():
            count = 0
            for browser, at in browsers.items():
                if at < 0:  # a returned push: no check of its own
                    continue
                last = recent.get((nid, browser))
                if last is not None and at - last < expiry:
                    count += 1
                else:
                    undecided.append((nid, browser, at))
            if count:
                violations[nid] = violations.get(nid, 0) + count
        return undecided

    async def _judge_from_store(
        self, undecided: list[tuple[str, bytes, int]], keys: dict[bytes, str], found: Applied
    ) -> None:
        if not undecided:
            return
        names = list(dict.fromkeys(keys[browser] for _, browser, _ in undecided))
        records = dict(zip(names, await self._store.hgetall_many(names), strict=True))
        violations = found.violations
        for nid, browser, at in undecided:
            last = records[keys[browser]].get(gid_field(nid))
            if last is not None and last.isdigit() and at - int(last) < self._expiry:
                violations[nid] = violations.get(nid, 0) + 1

    def _last_times(
        self, first: _First, again: _Again, keys: dict[bytes, str]
    ) -> tuple[dict[str, dict[str, bytes]], dict[str, list[str]]]:
        """Each pair's last time, remembered (the recent window) and as the fields to write
        per browser record; the ``push:`` fields of returned pushes, to delete."""
        recent = self._recent
        gids: dict[str, dict[str, bytes]] = {}
        pushes: dict[str, list[str]] = {}
        for nid, browsers in first.items():
            name = gid_field(nid)
            for browser, at in browsers.items():
                later = again.get((nid, browser)) if again else None
                last = (at if at >= 0 else ~at) if later is None else later[_LAST]
                pair = (nid, browser)
                recent[pair] = last
                recent.move_to_end(pair)
                key = keys[browser]
                fields = gids.get(key)
                if fields is None:
                    gids[key] = {name: seconds(last)}
                else:
                    fields[name] = seconds(last)
                if at < 0 or (later is not None and later[_PUSHED]):
                    pushes.setdefault(key, []).append(push_field(nid))
        while len(recent) > self._recent_size:
            recent.popitem(last=False)
        return gids, pushes

    async def _write(
        self,
        gids: dict[str, dict[str, bytes]],
        pushes: dict[str, list[str]],
        created: dict[bytes, int],
        keys: dict[bytes, str],
    ) -> None:
        max_age = self._settings.cookie_max_age_days * SECONDS_PER_DAY
        writes: list[FieldWrite] = [(key, fields, self._expiry) for key, fields in gids.items()]
        writes += [
            (keys[browser], {CREATED: seconds(at)}, max_age) for browser, at in created.items()
        ]
        await asyncio.gather(
            self._store.hset_many(writes),
            *(self._store.hdel(key, fields) for key, fields in pushes.items()),
        )
