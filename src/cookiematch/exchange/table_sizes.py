"""How big the exchange's tables are: hosted match entries per buyer and members per user list,
counted by scanning the store, at most once per interval across every worker and server.

    every worker, every few seconds:   claim ``sizes:exchange:claim`` (set_if_absent, TTL =
                                       interval)? ── yes ──▶ scan ``hm:`` and ``ul:``, write
                                       ``sizes:exchange`` (the counts and when they were taken)
    every worker, after that:          re-read the last counts written (any worker's) when
                                       ``READ_EVERY_SECONDS`` have passed; ``/metrics`` shows
                                       what was read last (``cached``)

A scan reads every hosted match key and every user-list map once: cheap at the default
interval (10 min) on Redis (SCAN is incremental) and SQLite, and never on a request. The claim
is never released: it expires, so the fleet measures once per interval even when its workers
start and stop.
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec

from cookiematch.clock import Clock
from cookiematch.errors import StorageError
from cookiematch.storage.base import Store

__all__ = ["TableSizeLog", "TableSizes", "measure"]

log = logging.getLogger(__name__)

SIZES_KEY = "sizes:exchange"
CLAIM_KEY = "sizes:exchange:claim"
READ_EVERY_SECONDS = 30.0
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
    async for key, _ in store.scan(HOSTED_PREFIX):
        nid = key.rpartition(":")[2]
        hosted[nid] = hosted.get(nid, 0) + 1
    user_lists: dict[str, int] = {}
    async for _, fields in store.scan_maps(USER_LISTS_PREFIX):
        for list_id in fields:
            user_lists[list_id] = user_lists.get(list_id, 0) + 1
    return TableSizes(clock(), hosted, user_lists)


class TableSizeLog:
    """Measures when this worker wins the interval's claim; reads the last measurement."""

    def __init__(self, store: Store, *, interval_seconds: float, clock: Clock = time.time) -> None:
        self._store = store
        self._interval = interval_seconds
        self._clock = clock
        self._latest: TableSizes | None = None
        self._read_at = -READ_EVERY_SECONDS

    async def measure_if_due(self) -> TableSizes | None:
        """Measure and store the sizes if no worker did in this interval; the new sizes, or
        None when another worker has the interval."""
        if not await self._store.set_if_absent(CLAIM_KEY, b"1", ttl=self._interval):
            return None
        started = time.monotonic()
        sizes = await measure(self._store, self._clock)
        await self._store.set(SIZES_KEY, msgspec.json.encode(sizes))
        log.info("table sizes measured in %.1f s", time.monotonic() - started)
        self._latest, self._read_at = sizes, time.monotonic()
        return sizes

    @property
    def cached(self) -> TableSizes | None:
        """The measurement read last (None before one was read)."""
        return self._latest

    async def latest(self) -> TableSizes | None:
        """The last measurement of any worker (None before the first); re-read from the store
        at most every ``READ_EVERY_SECONDS``, else the cached one."""
        if time.monotonic() - self._read_at >= READ_EVERY_SECONDS:
            raw = await self._store.get(SIZES_KEY)
            if raw is not None:
                try:
                    self._latest = msgspec.json.decode(raw, type=TableSizes)
                except msgspec.DecodeError as exc:
                    log.warning("stored table sizes unreadable, ignored: %s", exc)
            self._read_at = time.monotonic()
        return self._latest

    async def run(self, poll_seconds: float = 5.0) -> None:
        """Measure whenever this worker wins an interval and keep ``cached`` fresh; forever.
        A failing store is logged once, and once more when it answers again."""
        failing = False
        while True:
            try:
                await self.measure_if_due()
                await self.latest()
            except StorageError as exc:
                if not failing:
                    log.warning("table sizes not measured: %s", exc)
                failing = True
            else:
                if failing:
                    log.info("table sizes measured again")
                failing = False
            await asyncio.sleep(poll_seconds)
