"""User-list memberships: ``ul:{browser}`` field ``<list id>`` = the time the membership
counts from (unix seconds, ASCII), expiring ``membership_days`` after that time.

The seed's ``google_ula=<list id>[,<timestamp>]`` says when the user was added: the membership
counts from the given time, bounded by now. A time in the past starts it then (it ends
``membership_days`` after it, so a time longer ago than that adds nothing); a time in the
future is taken as now; no time is now. The store expires each field on its own, so the live
fields of a browser's map are exactly its current lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cookiematch.clock import SECONDS_PER_DAY

__all__ = ["Membership", "current_lists", "membership"]


@dataclass(frozen=True, slots=True)
class Membership:
    """When a membership counts from, and how long it still lasts (seconds)."""

    since: int
    ttl: int

    @property
    def field_value(self) -> bytes:
        return str(self.since).encode()


def membership(added_at: int | None, now: int, days: int) -> Membership | None:
    """The membership an add at ``added_at`` (None: now) gives at ``now`` on a list whose
    memberships last ``days``; None when it has already ended."""
    since = now if added_at is None else min(added_at, now)
    ttl = since + days * SECONDS_PER_DAY - now
    return Membership(since, ttl) if ttl > 0 else None


def current_lists(fields: Mapping[str, bytes]) -> frozenset[int]:
    """The list IDs of a browser's ``ul:`` map (its live fields), malformed names left out."""
    return frozenset(int(name) for name in fields if name.isascii() and name.isdigit())
