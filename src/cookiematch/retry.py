"""Backoff between retries: how long to wait before retry n, from a policy value.

    ceiling(n) = min(cap, first * 2^(n-1))      n = 1, 2, …: the retry about to be made
    delay(n)   = ceiling(n)                     without jitter
               = uniform in [0, ceiling(n))     with full jitter
    a wait the other side asks for (``Retry-After``) raises the delay, up to ``cap``

Pure: no sleeping, no clock, no I/O. The caller sleeps and decides when to stop (a number of
attempts, a deadline). The Redis flusher waits ``Backoff(0.05, 0.5)`` between failed flushes
while a write's retry window is open; DMP exports wait with full jitter between POSTs; DMP
pulls wait ``Backoff(0.5, 4.0)`` between pages that failed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``first`` seconds before the first retry, doubled for each next
    one, never above ``cap``; ``jitter`` draws each delay uniformly below that ceiling ("full
    jitter": retrying clients spread out instead of returning together)."""

    first: float
    cap: float
    jitter: bool = False

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry ``retry`` (1-based)."""
        if retry < 1:
            raise ValueError(f"retries are counted from 1, not {retry!r}")
        try:
            return min(self.cap, math.ldexp(self.first, retry - 1))  # first * 2^(retry-1)
        except OverflowError:  # beyond the largest float: far above any cap
            return self.cap

    def delay(
        self, retry: int, *, rand: Callable[[], float] = random.random, hint: float = 0.0
    ) -> float:
        """The wait before retry ``retry`` (1-based): the ceiling, or ``ceiling * rand()`` with
        jitter (``rand`` answers in [0, 1)); at least ``hint`` (what the other side asked
        for, e.g. ``Retry-After``) but then never above ``cap``."""
        ceiling = self.ceiling(retry)
        wait = ceiling * rand() if self.jitter else ceiling
        return max(wait, min(hint, self.cap))
