"""How many browsers each user list gained and lost: added (a ``google_ula`` or a bulk add),
removed (a bulk removal), expired (an add whose given time is longer ago than the list's
``membership_days``: it adds nothing).

Each worker counts in memory (a dictionary update on the request path) and, every
``FLUSH_SECONDS``, writes *its own cumulative counts of the day* into the list's field map
``ulc:<list id>``, one field per ``<day>.<worker>.<change>``: no two workers write the same
field, so nothing is lost without an atomic add. A reader sums the fields of the last
``WINDOW_DAYS`` days; fields expire after that.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable

from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.storage.base import FieldWrite, Store

__all__ = ["Change", "ListChanges", "changes_key"]

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
WINDOW_DAYS = 7


class Change(enum.StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    EXPIRED = "expired"


def changes_key(list_id: int) -> str:
    return f"ulc:{list_id}"


class ListChanges:
    """One worker's counts of user-list changes, shared through the store."""

    def __init__(
        self,
        store: Store,
        *,
        worker_id: str,
        clock: Clock,
        on_count: Callable[[int, Change, int], None] | None = None,
    ) -> None:
        """``on_count(list_id, change, n)`` is called with every count (e.g. a metric)."""
        self._store = store
        self._worker = worker_id
        self._clock = clock
        self._on_count = on_count
        self._counts: dict[tuple[int, int, Change], int] = {}  # (day, list, change) -> count
        self._dirty: set[tuple[int, int, Change]] = set()

    def _day(self) -> int:
        return int(self._clock()) // SECONDS_PER_DAY

    def count(self, list_id: int, change: Change, n: int = 1) -> None:
        if n <= 0:
            return
        key = (self._day(), list_id, change)
        self._counts[key] = self._counts.get(key, 0) + n
        self._dirty.add(key)
        if self._on_count is not None:
            self._on_count(list_id, change, n)

    async def flush(self) -> None:
        """Write the counts changed since the last flush; forget days out of the window."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        by_list: dict[int, dict[str, bytes]] = {}
        for day, list_id, change in dirty:
            count = self._counts[day, list_id, change]
            by_list.setdefault(list_id, {})[f"{day}.{self._worker}.{change}"] = b"%d" % count
        ttl = (WINDOW_DAYS + 1) * SECONDS_PER_DAY
        writes: list[FieldWrite] = [(changes_key(i), f, ttl) for i, f in by_list.items()]
        try:
            await self._store.hset_many(writes)
        except StorageError:
            self._dirty |= dirty  # written at the next flush
            raise
        oldest = self._day() - WINDOW_DAYS
        self._counts = {k: v for k, v in self._counts.items() if k[0] > oldest}

    async def totals(self, list_id: int) -> dict[str, int]:
        """Every worker's changes to the list over the last ``WINDOW_DAYS`` days (today too)."""
        oldest = self._day() - WINDOW_DAYS
        found = {change.value: 0 for change in Change}
        for field, value in (await self._store.hgetall(changes_key(list_id))).items():
            day, _, rest = field.partition(".")
            change = rest.rpartition(".")[2]
            if day.isdigit() and int(day) > oldest and change in found and value.isdigit():
                found[change] += int(value)
        return found

    async def run(self) -> None:
        """Flush every ``FLUSH_SECONDS``, forever; a failing store is logged once."""
        failing = False
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except StorageError as exc:
                if not failing and not isinstance(exc, StoreUnavailable):
                    log.warning("user list changes not written: %s", exc)
                failing = True
            else:
                failing = False

    async def close(self) -> None:
        """The last flush (the shutdown hook)."""
        try:
            await self.flush()
        except StorageError as exc:
            log.warning("user list changes lost at shutdown: %s", exc)
