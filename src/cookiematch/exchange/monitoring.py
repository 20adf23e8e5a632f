"""Per-buyer monitoring of the document's rules: frequency capping, pixel-match response
rate, request rate. Counters are shared by every worker through the store.

Each worker counts in memory and, about once a second, writes *its own cumulative values*
for the current time bucket into the buyer's field map ``mon:<nid>``, one field per
``<bucket>.<worker>.<counter>``. No two workers write the same field, so no increment is
lost without an atomic add in the store; readers sum the fields of the buckets inside the
window. Fields expire with the window.

Frequency capping: when the exchange redirects a gid to buyer X for browser B (a match tag,
or a pixel match that came back), the browser record (``browser_record.py``) keeps the time;
a match tag from X for B before ``match_expiry_days`` have passed is a violation. These
checks run off the request path: a request only appends to a bounded queue, which one
consumer task empties every ``CHECK_COALESCE_SECONDS`` in batches (one round of reads, one
round of writes per batch, so the store's group commit takes a batch in one transaction).
When the queue is full the check is dropped and counted (``checks_dropped``): under overload
monitoring samples, it never grows memory or slows the match tag.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.errors import StoreUnavailable
from cookiematch.exchange.browser_record import (
    CREATED,
    browser_record_key,
    gid_field,
    push_field,
    seconds,
)
from cookiematch.exchange.model import ExchangeSettings
from cookiematch.storage.base import Store

log = logging.getLogger(__name__)

BUCKET_SECONDS = 600
WINDOW_SECONDS = SECONDS_PER_DAY
MIN_PUSHES_FOR_RATE = 20  # below this many pushes in the window the rate is not judged
FLUSH_SECONDS = 1.0
RATE_REFRESH_SECONDS = 10.0
MAX_PENDING_CHECKS = 10_000  # frequency-capping checks waiting for the consumer
CHECK_BATCH = 512
CHECK_COALESCE_SECONDS = 0.05
"""The consumer waits this long after a check arrives before applying what is queued, so
that under load one round of store reads and writes covers hundreds of match tags."""


class Count(enum.StrEnum):
    """The counters kept per buyer."""

    MATCH_TAGS = "match_tags"  # gids redirected to the buyer by a match tag
    MATCH_TAGS_LIMITED = "match_tags_limited"  # over max_match_tags_per_second: nothing done
    FREQUENCY_CAP_VIOLATIONS = "frequency_cap_violations"
    PUSHES_ISSUED = "pushes_issued"
    PUSHES_RETURNED = "pushes_returned"
    PUSHES_THROTTLED = "pushes_throttled"  # skipped because the response rate is too low
    PUSHES_SUSPENDED = "pushes_suspended"  # skipped: enforcement suspended pixel matching
    BID_REQUESTS = "bid_requests"
    BID_REQUESTS_THROTTLED = "bid_requests_throttled"  # over max_qps: not sent
    BID_REQUESTS_MATCHED = "bid_requests_matched"  # sent with the buyer's hosted match (buyeruid)
    BIDS = "bids"
    NO_BIDS = "no_bids"
    TIMEOUTS = "timeouts"
    ERRORS = "errors"  # transport errors and non-200/204 statuses
    INVALID = "invalid"  # malformed bid responses
    WINS = "wins"
    CHECKS_DROPPED = "checks_dropped"  # frequency-capping checks dropped under overload


def monitor_key(nid: str) -> str:
    return f"mon:{nid}"


@dataclass(frozen=True, slots=True)
class _Check:
    """A gid redirected to a buyer (``push=False``: by a match tag) for a browser."""

    nid: str
    browser_id: bytes
    at: int
    push: bool = False
    new_cookie: bool = False


@dataclass(frozen=True, slots=True)
class BuyerStats:
    """One buyer's counters summed over the window, and what they mean for the rules."""

    nid: str
    window_seconds: int
    counts: dict[str, int]
    max_qps: float | None = None

    @property
    def response_rate(self) -> float | None:
        issued = self.counts.get(Count.PUSHES_ISSUED, 0)
        if issued < MIN_PUSHES_FOR_RATE:
            return None
        return min(1.0, self.counts.get(Count.PUSHES_RETURNED, 0) / issued)

    @property
    def hosted_match_rate(self) -> float | None:
        """The share of bid requests sent with the buyer's hosted match (None before any)."""
        sent = self.counts.get(Count.BID_REQUESTS, 0)
        if sent == 0:
            return None
        return min(1.0, self.counts.get(Count.BID_REQUESTS_MATCHED, 0) / sent)

    def to_dict(self) -> dict[str, object]:
        return {
            "nid": self.nid,
            "window_seconds": self.window_seconds,
            **{count.value: self.counts.get(count, 0) for count in Count},
            "pixel_match_response_rate": self.response_rate,
            "hosted_match_rate": self.hosted_match_rate,
            "bid_requests_per_second": round(
                self.counts.get(Count.BID_REQUESTS, 0) / self.window_seconds, 6
            ),
            "max_qps": self.max_qps,
        }


class BuyerMonitor:
    """Counts per buyer, shares them through the store, answers stats and response rates."""

    def __init__(
        self,
        store: Store,
        settings: ExchangeSettings,
        *,
        clock: Clock,
        worker_id: str,
        on_count: Callable[[str, Count, int], None] | None = None,
        window_seconds: int = WINDOW_SECONDS,
        bucket_seconds: int = BUCKET_SECONDS,
    ) -> None:
        if "." in worker_id:
            raise ValueError("worker_id must not contain '.'")
        self._store = store
        self._settings = settings
        self._clock = clock
        self._worker = worker_id
        self._on_count = on_count
        self._window = window_seconds
        self._bucket = bucket_seconds
        self._values: dict[tuple[str, int, Count], int] = {}  # this worker, cumulative
        self._dirty: set[tuple[str, int, Count]] = set()
        self._rates: dict[str, float | None] = {}
        self._checks: asyncio.Queue[_Check] = asyncio.Queue(MAX_PENDING_CHECKS)
        self._checking = asyncio.Lock()

    # -- counting ---------------------------------------------------------------------

    def count(self, nid: str, what: Count, n: int = 1) -> None:
        key = (nid, int(self._clock()) // self._bucket, what)
        self._values[key] = self._values.get(key, 0) + n
        self._dirty.add(key)
        if self._on_count is not None:
            self._on_count(nid, what, n)

    async def flush(self) -> None:
        """Write this worker's changed values to the store."""
        dirty, self._dirty = self._dirty, set()
        by_nid: dict[str, dict[str, bytes]] = {}
        for key in dirty:
            nid, bucket, what = key
            by_nid.setdefault(nid, {})[f"{bucket}.{self._worker}.{what}"] = seconds(
                self._values[key]
            )
        try:
            await asyncio.gather(
                *(
                    self._store.hset(monitor_key(nid), fields, ttl=self._window + self._bucket)
                    for nid, fields in by_nid.items()
                )
            )
        except Exception:
            self._dirty |= dirty  # retried at the next flush
            raise
        oldest = int(self._clock()) // self._bucket - self._window // self._bucket
        for key in [k for k in self._values if k[1] < oldest and k not in self._dirty]:
            del self._values[key]

    # -- reading ----------------------------------------------------------------------

    async def stats(self, nid: str, max_qps: float | None = None) -> BuyerStats:
        """Every worker's counts for ``nid`` over the window (this worker's flushed first)."""
        await self.flush()
        fields = await self._store.hgetall(monitor_key(nid))
        first = int(self._clock()) // self._bucket - self._window // self._bucket + 1
        counts: dict[str, int] = {}
        for name, raw in fields.items():
            bucket, _, rest = name.partition(".")
            what = rest.rpartition(".")[2]
            try:
                if int(bucket) < first:
                    continue
                counts[what] = counts.get(what, 0) + int(raw)
            except ValueError:
                continue
        return BuyerStats(nid, self._window, counts, max_qps)

    async def refresh_rates(self, nids: Iterable[str]) -> None:
        """Re-read the pixel-match response rates of ``nids`` (cached for the hot path)."""
        rates: dict[str, float | None] = {}
        for nid in nids:
            rates[nid] = (await self.stats(nid)).response_rate
        self._rates = rates

    def response_rate(self, nid: str) -> float | None:
        """The last known pixel-match response rate; None when unknown or too few pushes."""
        return self._rates.get(nid)

    # -- hooks of the Cookie Matching Service ------------------------------------------

    def gid_issued(self, nid: str, browser_id: bytes, *, new_cookie: bool = False) -> None:
        """A match tag redirected a gid to ``nid``: count it, queue the frequency check."""
        self.count(nid, Count.MATCH_TAGS)
        self._queue(_Check(nid, browser_id, int(self._clock()), new_cookie=new_cookie))

    def push_returned(self, nid: str, browser_id: bytes) -> None:
        """A pixel match came back valid: the buyer now has a fresh match for the browser."""
        self.count(nid, Count.PUSHES_RETURNED)
        self._queue(_Check(nid, browser_id, int(self._clock()), push=True))

    @property
    def pending_checks(self) -> int:
        """Frequency-capping checks queued and not yet applied."""
        return self._checks.qsize()

    def _queue(self, check: _Check) -> None:
        try:
            self._checks.put_nowait(check)
        except asyncio.QueueFull:
            self.count(check.nid, Count.CHECKS_DROPPED)

    # -- background work ----------------------------------------------------------------

    async def _check_batch(self, checks: list[_Check]) -> None:
        """Apply queued checks in order: one read per browser record, one write each."""
        keys = {browser_record_key(c.browser_id) for c in checks}
        records = dict(
            zip(keys, await asyncio.gather(*(self._store.hgetall(k) for k in keys)), strict=True)
        )
        expiry = self._settings.match_expiry_days * SECONDS_PER_DAY
        writes: dict[str, dict[str, bytes]] = {}
        created: dict[str, bytes] = {}
        pushes_done: dict[str, list[str]] = {}
        for check in checks:
            key = browser_record_key(check.browser_id)
            field = gid_field(check.nid)
            pending = writes.setdefault(key, {})
            last = pending.get(field, records[key].get(field))
            if (
                not check.push
                and last is not None
                and last.isdigit()
                and check.at - int(last) < expiry
            ):
                self.count(check.nid, Count.FREQUENCY_CAP_VIOLATIONS)
            pending[field] = seconds(check.at)
            if check.push:
                pushes_done.setdefault(key, []).append(push_field(check.nid))
            if check.new_cookie:  # the cookie-setting hop of /pixel proved the cookie sticks
                created[key] = seconds(check.at)
        max_age = self._settings.cookie_max_age_days * SECONDS_PER_DAY
        await asyncio.gather(
            *(self._store.hset(key, fields, ttl=expiry) for key, fields in writes.items()),
            *(self._store.hset(key, {CREATED: at}, ttl=max_age) for key, at in created.items()),
            *(self._store.hdel(key, fields) for key, fields in pushes_done.items()),
        )

    async def _check_available(self, first: _Check | None = None) -> bool:
        """Apply ``first`` and every check queued now, in order and in batches; False when
        there was none."""
        async with self._checking:
            if first is None and self._checks.empty():
                return False
            while first is not None or not self._checks.empty():
                batch = [first] if first is not None else []
                first = None
                while len(batch) < CHECK_BATCH and not self._checks.empty():
                    batch.append(self._checks.get_nowait())
                try:
                    await self._check_batch(batch)
                except StoreUnavailable:  # the store's guard logs an outage once
                    pass
                except Exception as exc:
                    log.warning("frequency-capping checks failed (%d lost): %s", len(batch), exc)
            return True

    async def consume(self) -> None:
        """Apply queued checks as they come (coalesced for ``CHECK_COALESCE_SECONDS``), forever
        (one task per worker)."""
        while True:
            first = await self._checks.get()
            try:
                await asyncio.sleep(CHECK_COALESCE_SECONDS)
            except asyncio.CancelledError:
                self._queue(first)  # back in the queue, for ``drain`` at shutdown
                raise
            await self._check_available(first)

    async def drain(self) -> None:
        """Apply every check queued so far (tests, shutdown)."""
        while await self._check_available():
            pass

    async def run(self, nids: Callable[[], Iterable[str]]) -> None:
        """Apply checks as they come; flush every second and refresh response rates every few
        seconds, forever."""
        consumer = asyncio.get_running_loop().create_task(self.consume())
        try:
            await self._flush_forever(nids)
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer

    async def _flush_forever(self, nids: Callable[[], Iterable[str]]) -> None:
        since_refresh = RATE_REFRESH_SECONDS
        while True:
            try:
                await self.flush()
                if since_refresh >= RATE_REFRESH_SECONDS:
                    await self.refresh_rates(nids())
                    since_refresh = 0.0
            except StoreUnavailable:  # the store's guard logs an outage once
                pass
            except Exception as exc:
                log.warning("monitoring flush failed: %s", exc)
            await asyncio.sleep(FLUSH_SECONDS)
            since_refresh += FLUSH_SECONDS

    async def close(self) -> None:
        await self.drain()
        with contextlib.suppress(Exception):
            await self.flush()
