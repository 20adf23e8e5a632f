"""Per-buyer token buckets for hosted match writes (status 5 when over the rate)."""

from __future__ import annotations

from cookiematch.clock import Clock


class TokenBuckets:
    """One bucket per key; capacity is one second's worth of tokens (at least 1)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, rate: float) -> bool:
        now = self._clock()
        capacity = max(rate, 1.0)
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True
