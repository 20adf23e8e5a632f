"""Counting a key in one call, whatever mapping holds the counts.

The domain's tallies (the privacy policy's decisions, the DMP's funnel, the buyer's stats)
count into a ``MutableMapping``: a ``Counter`` of their own, or the server's shared counts
(``web/counters.WorkerCounts``), whose ``add`` counts in one look-up where ``counts[key] +=
n`` takes two calls of Python. These give the hot path the one call.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from typing import TypeVar

__all__ = ["adder", "counter", "each_counter"]

K = TypeVar("K")


def adder(counts: MutableMapping[K, int]) -> Callable[[K, int], None]:
    """A function adding an amount to one key of ``counts`` (its ``add(key, amount)`` when it
    has one, as ``WorkerCounts`` does)."""
    add: Callable[[K, int], None] | None = getattr(counts, "add", None)
    if add is not None:
        return add

    def add_to(key: K, amount: int) -> None:
        counts[key] += amount

    return add_to


def counter(counts: MutableMapping[K, int]) -> Callable[[K], None]:
    """A function counting one key of ``counts`` once (its ``add`` when it has one)."""
    add: Callable[[K], None] | None = getattr(counts, "add", None)
    if add is not None:
        return add

    def count(key: K) -> None:
        counts[key] += 1

    return count


def each_counter(counts: MutableMapping[K, int]) -> Callable[[Sequence[K]], None]:
    """A function counting each key of a sequence once, in one call (``add_each(keys)`` when
    ``counts`` has one, as ``WorkerCounts`` does): a request's several counts at once."""
    add_each: Callable[[Sequence[K]], None] | None = getattr(counts, "add_each", None)
    if add_each is not None:
        return add_each

    def count_each(keys: Sequence[K]) -> None:
        for key in keys:
            counts[key] += 1

    return count_each
