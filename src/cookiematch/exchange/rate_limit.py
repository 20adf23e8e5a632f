"""A per-key rate limit shared by every worker and instance through the store, approximately.

No request touches the store. Each worker admits locally with a token bucket refilled at its
*share* of the limit, and every ``SYNC_SECONDS`` (off the request path) publishes its demand
(requests per second seen since its last sync, admitted or not) in the key's field map
``rl:<key>``, one field per worker (so no atomic add is needed; a field expires
``STALE_SECONDS`` after its last write, which drops dead workers), and reads the others'.
From the demands ``d`` of the ``n`` live workers (``D`` their sum), worker ``i`` with limit
``R`` takes:

    D > R:   share = R * d_i / D             (contended: split in proportion to demand)
    D <= R:  share = d_i + (R - D) / n       (its demand plus an even part of what is spare)

Either way the shares of workers that read the same demands add up to ``R``. A worker with no
view yet (just started) takes all of ``R``. Each bucket holds at most ``SYNC_SECONDS`` of its
share (at least one request).

How approximate (docs/auction.md, "Match-tag rate limit"), with ``S = SYNC_SECONDS`` and ``n``
live workers: once the shares have settled (the spread of requests over workers holds still),
at most ``R*T + R*S + n`` requests are admitted in any ``T`` seconds (the buckets' bursts).
A change of the spread is seen by every worker within ``2*S`` (one interval to measure the new
demand, one for the others to read it), during which shares overlap by up to ``(n-1)*R``; from a
cold start under load (each bucket starts full at ``R``) the bound is ``R*T + 3*n*R*S + n``.
Since a share never exceeds ``R``, the rate is never above ``n*R``, whatever the traffic does.
Requests that move to a worker that had none are refused there until its demand is seen.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cookiematch.clock import Clock
from cookiematch.errors import StoreUnavailable
from cookiematch.storage.base import Store

log = logging.getLogger(__name__)

SYNC_SECONDS = 0.5
STALE_SECONDS = 5 * SYNC_SECONDS


def rate_limit_key(key: str) -> str:
    return f"rl:{key}"


def share_of(limit: float, mine: float, others: list[float]) -> float:
    """This worker's part of ``limit`` from its demand and the other live workers'."""
    total = mine + sum(others)
    if total > limit:
        return limit * mine / total
    return mine + (limit - total) / (len(others) + 1)


@dataclass(slots=True)
class _Bucket:
    """One key on this worker: its token bucket and the demand since the last sync."""

    share: float  # requests per second this worker may admit
    limit: float  # the limit ``share`` was computed for
    tokens: float
    refilled: float  # when ``tokens`` was last brought up to date
    attempts: int = 0
    since: float = 0.0  # start of the current demand measurement


class SharedRateLimit:
    """This worker's side of the shared limits: ``allow`` on the hot path, ``sync`` off it."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock,
        worker_id: str,
        sync_seconds: float = SYNC_SECONDS,
    ) -> None:
        self._store = store
        self._clock = clock
        self._worker = worker_id
        self._sync_seconds = sync_seconds
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, key: str, limit: float) -> bool:
        """Whether one more request for ``key`` fits under ``limit`` requests per second."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:  # no view of the others yet: all of the limit
            bucket = _Bucket(limit, limit, self._capacity(limit), now, since=now)
            self._buckets[key] = bucket
        bucket.attempts += 1
        share = bucket.share if bucket.limit == limit else bucket.share * limit / bucket.limit
        tokens = min(self._capacity(share), bucket.tokens + (now - bucket.refilled) * share)
        bucket.refilled = now
        if tokens < 1.0:
            bucket.tokens = tokens
            return False
        bucket.tokens = tokens - 1.0
        return True

    def share(self, key: str) -> float | None:
        """This worker's current share of ``key``'s limit (None: not limited here yet)."""
        bucket = self._buckets.get(key)
        return None if bucket is None else bucket.share

    def _capacity(self, share: float) -> float:
        return max(1.0, share * self._sync_seconds)

    async def sync(self, limits: Mapping[str, float]) -> None:
        """Publish this worker's demand for each limited key, read the others', recompute the
        shares; forget the keys no longer limited."""
        now = self._clock()
        for key in [k for k in self._buckets if k not in limits]:
            del self._buckets[key]
        if not limits:
            return
        demands: dict[str, float] = {}
        counted: dict[str, int] = {}  # the attempts ``demands`` measured, per key
        for key in limits:
            bucket = self._buckets.get(key)
            if bucket is None:
                demands[key] = 0.0
                continue
            elapsed = now - bucket.since
            counted[key] = bucket.attempts
            demands[key] = bucket.attempts / elapsed if elapsed > 0 else 0.0
        keys = list(limits)
        await self._store.hset_many(
            [
                (rate_limit_key(key), {self._worker: f"{demands[key]:.3f}".encode()}, STALE_SECONDS)
                for key in keys
            ]
        )
        maps = await self._store.hgetall_many([rate_limit_key(key) for key in keys])
        # requests kept coming while the store answered (long under load): they were admitted
        # at the old share and belong to the next demand, which is measured from ``now``
        done = self._clock()
        for key, fields in zip(keys, maps, strict=True):
            others = [_demand(raw) for field, raw in fields.items() if field != self._worker]
            limit = limits[key]
            share = share_of(limit, demands[key], others)
            bucket = self._buckets.get(key)
            if bucket is None:
                self._buckets[key] = _Bucket(share, limit, self._capacity(share), done, since=now)
                continue
            # bring the tokens up to date at the old share before switching to the new one
            old = bucket.share * limit / bucket.limit
            bucket.tokens = min(
                self._capacity(share), bucket.tokens + max(0.0, done - bucket.refilled) * old
            )
            bucket.refilled = max(bucket.refilled, done)
            bucket.share, bucket.limit = share, limit
            bucket.attempts -= counted.get(key, 0)
            bucket.since = max(bucket.since, now)

    async def run(self, limits: Callable[[], Mapping[str, float]]) -> None:
        """``sync`` every ``sync_seconds``, forever (one task per worker)."""
        while True:
            try:
                await self.sync(limits())
            except StoreUnavailable:  # the store's guard logs an outage once
                pass
            except Exception as exc:
                log.warning("rate-limit sync failed; keeping the last shares: %s", exc)
            await asyncio.sleep(self._sync_seconds)


def _demand(raw: bytes) -> float:
    try:
        value = float(raw)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value >= 0 else 0.0
