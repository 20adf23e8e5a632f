"""cookiematch.retry: the backoff every retry loop takes (Redis flusher, DMP exports, pulls)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.retry import Backoff

seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False)


def test_the_ceiling_doubles_from_first_and_stops_at_cap() -> None:
    backoff = Backoff(first=0.05, cap=0.5)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    assert [backoff.delay(n) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5]


@given(first=seconds, cap=seconds, retries=st.integers(min_value=1, max_value=2200))
def test_the_ceiling_is_the_delay_doubled_after_each_failure(
    first: float, cap: float, retries: int
) -> None:
    """The same waits as doubling the last one within [first, cap] at each failure in a row
    (how the Redis flusher computed them), also past the largest float."""
    backoff = Backoff(first, cap)
    delay = 0.0
    for _ in range(retries):
        delay = min(max(delay * 2, first), cap)
    assert backoff.ceiling(retries) == delay


def test_full_jitter_scales_the_ceiling_by_rand() -> None:
    backoff = Backoff(first=0.5, cap=30.0, jitter=True)
    assert backoff.delay(1, rand=lambda: 1.0) == 0.5
    assert backoff.delay(3, rand=lambda: 0.5) == 1.0
    assert backoff.delay(3, rand=lambda: 0.0) == 0.0
    assert backoff.delay(10, rand=lambda: 0.5) == 15.0
    rng = random.Random(7)
    draws = [backoff.delay(4, rand=rng.random) for _ in range(200)]
    assert all(0 <= wait < 4.0 for wait in draws)
    assert len(set(draws)) == 200  # spread out, not one wait for every client


def test_without_jitter_rand_is_not_drawn() -> None:
    def never() -> float:
        raise AssertionError("rand was called")

    assert Backoff(first=1.0, cap=8.0).delay(2, rand=never) == 2.0


def test_a_hint_raises_the_delay_up_to_cap() -> None:
    backoff = Backoff(first=0.5, cap=30.0, jitter=True)
    assert backoff.delay(1, rand=lambda: 1.0, hint=7.0) == 7.0  # Retry-After: 7
    assert backoff.delay(1, rand=lambda: 1.0, hint=120.0) == 30.0  # never above cap
    assert backoff.delay(3, rand=lambda: 1.0, hint=1.0) == 2.0  # a shorter hint changes nothing
    assert backoff.delay(1, rand=lambda: 0.0, hint=0.0) == 0.0


@pytest.mark.parametrize("retry", [0, -1])
def test_retries_count_from_one(retry: int) -> None:
    with pytest.raises(ValueError, match="from 1"):
        Backoff(first=0.05, cap=0.5).ceiling(retry)
