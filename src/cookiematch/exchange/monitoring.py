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
checks run off the request path (``frequency_checks.py``): a request records
``(buyer, browser, time)`` in a plain per-worker dict, and once a second (sooner when many
pairs wait) one task applies the whole batch with one bulk read and one bulk write. Every
check is applied; repeats of a pair within a batch are coalesced, not dropped. Only beyond
``MAX_PENDING_PAIRS`` waiting pairs (a store far slower than the traffic) is a new pair's
check dropped, and counted (``checks_dropped``), as is a check whose browser record could
not be read.

A match tag's count is a plain int per buyer on the request path (``gid_issued``), folded
into the bucketed counts (and ``on_count``) at each flush, at ``stats`` and when the bucket
turns: the counters lag the requests by at most a flush interval, and no count is lost.

A crash (kill -9) loses what this worker recorded since its last flush: about a second of
counts and of frequency-capping checks. These are monitoring figures, not acknowledged
writes; a graceful stop (``close``) applies and flushes everything.
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
from cookiematch.exchange.browser_record import seconds
from cookiematch.exchange.check_process import ChecksProcess
from cookiematch.exchange.frequency_checks import (
    FLUSH_AT_PAIRS,
    MAX_PENDING_PAIRS,
    Applied,
    FrequencyChecks,
)
from cookiematch.exchange.model import ExchangeSettings
from cookiematch.storage.base import Store

log = logging.getLogger(__name__)

BUCKET_SECONDS = 600
WINDOW_SECONDS = SECONDS_PER_DAY
MIN_PUSHES_FOR_RATE = 20  # below this many pushes in the window the rate is not judged
FLUSH_SECONDS = 1.0
RATE_REFRESH_SECONDS = 10.0
CHECK_SECONDS = 1.0  # frequency-capping checks are applied this often (or once many wait)


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
    CHECKS_DROPPED = "checks_dropped"  # frequency-capping checks not applied (overload, store)


def monitor_key(nid: str) -> str:
    return f"mon:{nid}"


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
        check_seconds: float = CHECK_SECONDS,
        max_pending_pairs: int = MAX_PENDING_PAIRS,
        flush_at_pairs: int = FLUSH_AT_PAIRS,
        checks_process: ChecksProcess | None = None,
    ) -> None:
        """``checks_process``: the child process that applies the frequency-capping checks
        (``check_process.py``; closed with the monitor), else this worker applies them."""
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
        self._tags: dict[str, int] = {}  # match tags per buyer since the last fold
        self._tags_bucket = -1  # the bucket they fall in
        self._folds: list[Callable[[], None]] = []
        self._dirty: set[tuple[str, int, Count]] = set()
        self._rates: dict[str, float | None] = {}
        self._checks = FrequencyChecks(
            store, settings, max_pending=max_pending_pairs, flush_at=flush_at_pairs
        )
        self._check_seconds = check_seconds
        self._checking = asyncio.Lock()
        self._process = checks_process

    # -- counting ---------------------------------------------------------------------

    def count(self, nid: str, what: Count, n: int = 1) -> None:
        self._count_at(nid, what, int(self._clock()), n)

    def _count_at(self, nid: str, what: Count, at: int, n: int = 1) -> None:
        key = (nid, at // self._bucket, what)
        self._values[key] = self._values.get(key, 0) + n
        self._dirty.add(key)
        if self._on_count is not None:
            self._on_count(nid, what, n)

    def _fold_tags(self) -> None:
        """Count the match tags tallied since the last fold in their bucket."""
        tags, self._tags = self._tags, {}
        at = self._tags_bucket * self._bucket
        for nid, n in tags.items():
            self._count_at(nid, Count.MATCH_TAGS, at, n)

    def before_flush(self, fold: Callable[[], None]) -> None:
        """Call ``fold`` at each flush, first: counts tallied elsewhere join the metrics at
        the monitor's pace."""
        self._folds.append(fold)

    def fold(self) -> None:
        """Count what was tallied since the last fold (``before_flush``'s folds, then this
        monitor's match tags): flush does it first; a metrics scrape as well."""
        for fold in self._folds:
            fold()
        self._fold_tags()

    async def flush(self) -> None:
        """Write this worker's changed values to the store."""
        self.fold()
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

    def gid_issued(
        self, nid: str, browser_id: bytes, *, new_cookie: bool = False, at: int | None = None
    ) -> None:
        """A match tag redirected a gid to ``nid``: count it, record the frequency check.
        ``at``: when (unix seconds), for a match tag answered elsewhere (the edge); now by
        default. The count is tallied (``_fold_tags``)."""
        if at is None:
            at = int(self._clock())
        if at // self._bucket != self._tags_bucket:
            self._fold_tags()
            self._tags_bucket = at // self._bucket
        tags = self._tags
        tags[nid] = tags.get(nid, 0) + 1
        if not self._checks.record(nid, browser_id, at, new_cookie=new_cookie):
            self._count_at(nid, Count.CHECKS_DROPPED, at)

    def push_returned(self, nid: str, browser_id: bytes) -> None:
        """A pixel match came back valid: the buyer now has a fresh match for the browser."""
        at = int(self._clock())
        self._count_at(nid, Count.PUSHES_RETURNED, at)
        if not self._checks.record(nid, browser_id, at, push=True):
            self._count_at(nid, Count.CHECKS_DROPPED, at)

    @property
    def pending_checks(self) -> int:
        """Frequency-capping checks recorded and not yet applied."""
        return self._checks.pending

    # -- background work ----------------------------------------------------------------

    async def apply_checks(self) -> None:
        """Apply the frequency-capping checks recorded so far and count what they found."""
        async with self._checking:
            if not self._checks.pending:
                return
            batch = self._checks.take()
            if self._process is None:
                applied = await self._checks.apply_batch(batch)
            else:
                applied = await self._process.apply(batch)
        self._count_applied(applied)

    def _count_applied(self, applied: Applied) -> None:
        for nid, n in applied.violations.items():
            self.count(nid, Count.FREQUENCY_CAP_VIOLATIONS, n)
        for nid, n in applied.unread.items():
            self.count(nid, Count.CHECKS_DROPPED, n)
        if applied.error is not None and not isinstance(applied.error, StoreUnavailable):
            # (the store's guard logs an outage once)
            log.warning(
                "frequency-capping checks failed (%d checks, %d not judged): %s",
                applied.checks,
                sum(applied.unread.values()),
                applied.error,
            )

    async def consume(self) -> None:
        """Apply recorded checks every ``check_seconds``, or as soon as ``flush_at_pairs``
        pairs wait, forever (one task per worker)."""
        due = self._checks.due
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(due.wait(), self._check_seconds)
            try:  # a cancelled task lets the batch it took be applied all the same
                await asyncio.shield(self.apply_checks())
            except Exception as exc:  # never ends the task
                log.warning("frequency-capping checks failed: %s", exc)

    async def drain(self) -> None:
        """Apply every check recorded so far and count every tally (tests, shutdown)."""
        self.fold()
        await self.apply_checks()

    async def run(self, nids: Callable[[], Iterable[str]]) -> None:
        """Apply checks every second; flush every second and refresh response rates every few
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
        if self._process is not None:
            await self._process.close()
