"""A figure measured by scanning the store, at most once per interval across every worker and
server, and read back by all of them.

    every worker, every few seconds:   claim ``<key>:claim`` (set_if_absent, TTL = interval)?
                                       ── yes ──▶ measure, write ``<key>`` (the figure, with
                                       when it was taken)
    every worker, after that:          re-read the last figure written (any worker's) when
                                       ``READ_EVERY_SECONDS`` have passed; ``/metrics`` shows
                                       what was read last (``cached``)

The claim is never released: it expires, so the fleet measures once per interval even when
its workers start and stop; while a measurement runs, its worker renews the claim, so a scan
longer than the interval is never joined by another. Users: the exchange's table sizes
(``exchange/table_sizes.py``) and the buyer's match-table size (``buyer/table_size.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import msgspec

from cookiematch.errors import StorageError
from cookiematch.storage.base import Store

__all__ = ["READ_EVERY_SECONDS", "MeasuredLog"]

log = logging.getLogger(__name__)

READ_EVERY_SECONDS = 30.0

M = TypeVar("M", bound=msgspec.Struct)


class MeasuredLog(Generic[M]):
    """Measures (``measure``) when this worker wins the interval's claim; reads the last
    measurement of any worker, stored at ``key`` as JSON of ``kind``."""

    def __init__(
        self,
        store: Store,
        *,
        key: str,
        kind: type[M],
        measure: Callable[[], Awaitable[M]],
        interval_seconds: float,
        what: str,
    ) -> None:
        self._store = store
        self._key = key
        self._kind = kind
        self._measure = measure
        self._interval = interval_seconds
        self._what = what  # names the figure in the log
        self._latest: M | None = None
        self._read_at = -READ_EVERY_SECONDS

    async def measure_if_due(self) -> M | None:
        """Measure and store if no worker did in this interval; the new measurement, or None
        when another worker has the interval."""
        claim = self._key + ":claim"
        if not await self._store.set_if_absent(claim, b"1", ttl=self._interval):
            return None
        started = time.monotonic()
        measured = await self._measured(claim)
        await self._store.set(self._key, msgspec.json.encode(measured))
        log.info("%s measured in %.1f s", self._what, time.monotonic() - started)
        self._latest, self._read_at = measured, time.monotonic()
        return measured

    async def _measured(self, claim: str) -> M:
        """``measure()``, the claim renewed every third of the interval while it runs: a scan
        longer than the interval is never joined by another worker's."""
        task = asyncio.ensure_future(self._measure())
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._interval / 3)
                if done:
                    return task.result()
                await self._store.set(claim, b"1", ttl=self._interval)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    @property
    def cached(self) -> M | None:
        """The measurement read last (None before one was read)."""
        return self._latest

    async def latest(self) -> M | None:
        """The last measurement of any worker (None before the first); re-read from the store
        at most every ``READ_EVERY_SECONDS``, else the cached one."""
        if time.monotonic() - self._read_at >= READ_EVERY_SECONDS:
            raw = await self._store.get(self._key)
            if raw is not None:
                try:
                    self._latest = msgspec.json.decode(raw, type=self._kind)
                except msgspec.DecodeError as exc:
                    log.warning("stored %s unreadable, ignored: %s", self._what, exc)
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
                    log.warning("%s not measured: %s", self._what, exc)
                failing = True
            else:
                if failing:
                    log.info("%s measured again", self._what)
                failing = False
            await asyncio.sleep(poll_seconds)
