"""``tally``: a count in one call, through the mapping's own ``add`` when it has one."""

from __future__ import annotations

from collections import Counter

from cookiematch.tally import adder, counter


class AddingCounts(Counter[str]):
    """Counts that count in one call of their own, as the server's shared counts do; each
    call is remembered to show which path was taken."""

    def __init__(self) -> None:
        super().__init__()
        self.adds: list[tuple[str, int]] = []

    def add(self, key: str, amount: int = 1) -> None:
        self.adds.append((key, amount))
        self[key] += amount


def test_a_plain_mapping_is_counted_by_item() -> None:
    counts: Counter[str] = Counter()
    count, add = counter(counts), adder(counts)
    count("a")
    count("a")
    add("b", 3)
    add("a", 0)
    assert counts == {"a": 2, "b": 3}


def test_a_mapping_with_add_counts_through_it() -> None:
    counts = AddingCounts()
    counter(counts)("a")
    adder(counts)("b", 5)
    assert counts.adds == [("a", 1), ("b", 5)]
    assert counts == {"a": 1, "b": 5}
