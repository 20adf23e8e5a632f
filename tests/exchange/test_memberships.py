"""The seed's timestamp semantics of a user-list membership: counted from the given time,
bounded by now."""

from __future__ import annotations

import pytest

from cookiematch.exchange.memberships import Membership, current_lists, membership

NOW = 1_700_000_000
DAY = 86400


@pytest.mark.parametrize(
    ("added_at", "days", "expected"),
    [
        (None, 30, Membership(NOW, 30 * DAY)),  # no time: now
        (NOW, 30, Membership(NOW, 30 * DAY)),
        (NOW - 10 * DAY, 30, Membership(NOW - 10 * DAY, 20 * DAY)),  # counted from then
        (NOW + 5 * DAY, 30, Membership(NOW, 30 * DAY)),  # a time to come is now
        (NOW - 30 * DAY + 1, 30, Membership(NOW - 30 * DAY + 1, 1)),  # its last second
        (NOW - 30 * DAY, 30, None),  # ended at this very second
        (7654321, 30, None),  # the seed's example: March 1970
        (7654321, 540, None),
        (0, 1, None),
    ],
)
def test_membership(added_at: int | None, days: int, expected: Membership | None) -> None:
    assert membership(added_at, NOW, days) == expected


def test_field_value_is_the_start_in_ascii() -> None:
    found = membership(NOW - 5, NOW, 1)
    assert found is not None and found.field_value == str(NOW - 5).encode()


def test_current_lists_are_the_live_fields() -> None:
    fields = {"12345": b"1", "45678": b"2", "junk": b"3", "": b"4", "١٢": b"5"}
    assert current_lists(fields) == frozenset({12345, 45678})
    assert current_lists({}) == frozenset()
