"""How big the exchange's tables are: hosted match entries per buyer and members per user list,
counted by scanning the store, at most once per interval across every worker and server
(``storage/measured.py``: the claim ``sizes:exchange:claim``, the counts in ``sizes:exchange``).

A scan reads every hosted match key (``hm:``) and every user-list map (``ul:``) once: cheap at
the default interval (10 min) on Redis (SCAN is incremental) and SQLite, and never on a
request. A count needs no key order: the scans hand their pages on as the store finds them
(``in_order=False``), so the worker that counts holds one page at a time, not every key name
of the table (on Redis a key may then be counted twice while Redis resizes its table).
"""

from __future__ import annotations

import time

import msgspec

from cookiematch.clock import Clock
from cookiematch.storage.base import Store
from cookiematch.storage.measured import MeasuredLog

__all__ = ["TableSizeLog", "TableSizes", "measure"]

SIZES_KEY = "sizes:exchange"  # the claim: ``sizes:exchange:claim`` (``storage/measured.py``)
HOSTED_PREFIX = "hm:"
USER_LISTS_PREFIX = "ul:"


class TableSizes(msgspec.Struct, frozen=True):
    """The counts at ``measured_at`` (unix seconds): ``hosted[nid]`` hosted match entries,
    ``user_lists[list_id]`` browsers on the list."""

    measured_at: float
    hosted: dict[str, int]
    user_lists: dict[str, int]


async def measure(store: Store, clock: Clock) -> TableSizes:
    """Count every live hosted match entry (``hm:{browser}:<nid>``) and user-list membership
    (fields of ``ul:{browser}``)."""
    hosted: dict[str, int] = {}
    async for page in store.scan_pages(HOSTED_PREFIX, in_order=False):
        for key, _ in page:
            nid = key.rpartition(":")[2]
            hosted[nid] = hosted.get(nid, 0) + 1
    user_lists: dict[str, int] = {}
    async for _, fields in store.scan_maps(USER_LISTS_PREFIX, in_order=False):
        for list_id in fields:
            user_lists[list_id] = user_lists.get(list_id, 0) + 1
    return TableSizes(clock(), hosted, user_lists)


class TableSizeLog(MeasuredLog[TableSizes]):
    """Measures when this worker wins the interval's claim; reads the last measurement."""

    def __init__(self, store: Store, *, interval_seconds: float, clock: Clock = time.time) -> None:
        super().__init__(
            store,
            key=SIZES_KEY,
            kind=TableSizes,
            measure=lambda: measure(store, clock),
            interval_seconds=interval_seconds,
            what="table sizes",
        )
