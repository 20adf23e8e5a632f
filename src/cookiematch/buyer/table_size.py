"""How big the buyer's match table is, and how much of it is stale: counted by scanning the
table (``MatchTable.match_times``: both layouts) at most once per interval across every worker
and server (``storage/measured.py``: the claim ``sizes:buyer:<nid>:claim``, the counts in
``sizes:buyer:<nid>``).

A pairing is *stale* once older than ``stale_after_seconds`` (``match_ttl_days``): the redirect
handler re-matches such a user on its next visit; it still answers bids until its entry lapses
(``entry_ttl_days``), when it stops being counted at all.
"""

from __future__ import annotations

import time

import msgspec

from cookiematch.buyer.matchtable import MatchTable
from cookiematch.clock import Clock
from cookiematch.storage.measured import MeasuredLog

__all__ = ["MatchTableSize", "MatchTableSizeLog", "measure"]


class MatchTableSize(msgspec.Struct, frozen=True):
    """At ``measured_at`` (unix seconds): ``entries`` live pairings, ``stale`` of them older
    than the staleness period."""

    measured_at: float
    entries: int
    stale: int


async def measure(table: MatchTable, stale_after_seconds: float, clock: Clock) -> MatchTableSize:
    """Count the live pairings of ``table`` and the stale ones among them."""
    now = clock()
    entries = stale = 0
    async for matched_at in table.match_times():
        entries += 1
        if now - matched_at > stale_after_seconds:
            stale += 1
    return MatchTableSize(now, entries, stale)


class MatchTableSizeLog(MeasuredLog[MatchTableSize]):
    """The match table's size, measured by one worker per interval, read by all."""

    def __init__(
        self,
        table: MatchTable,
        *,
        stale_after_seconds: float,
        interval_seconds: float,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(
            table.store,
            key=f"sizes:buyer:{table.keys.nid}",
            kind=MatchTableSize,
            measure=lambda: measure(table, stale_after_seconds, clock),
            interval_seconds=interval_seconds,
            what="match table size",
        )
