"""The funnel's counts in the store: one field per process that counts, one stable total.

    {dmp:funnel}      field map: per process, a server worker's or a CLI run's cumulative
                      counts, and ``seen`` (when it last wrote them): its field rewritten at
                      each flush, and at least every ``stale / 6`` seconds while it lives
    {dmp:funnelsum}   the counts of processes gone, added up (``FunnelTotal``)

A process writes only its own field (``FunnelLog.flush``), so concurrent flushes never lose a
count. A field not written for ``stale`` seconds (an hour) belongs to a process that is gone
(stopped, crashed, or a CLI run that ended): the roll-up (``roll_up``, under a lease, run by
every server worker each minute and by every CLI run at its end) adds it into the total in
one write of the total key, which also names the fields it holds; the next roll-up deletes
those fields, and until then a reader skips them. So the fields are bounded by the processes
of the last hour, nothing expires unread, and every count is in exactly one place:

    reader:  total key first, then every field it does not name, added up

Both read the one map (a field map: one read whatever else the store holds; an earlier
version's plain keys, ``{dmp:funnel}:<process>``, were found with a prefix scan, which walks
the whole keyspace on Redis). Those keys are moved into the map once per store by the first
reader or roll-up (``storage/moved_keys.py``; the total's names of them read as fields).

A process that could not write for ``stale / 2`` seconds (a store outage, a CLI ``--every``
loop between runs) may see its field rolled up: it stops writing there and goes on under a
new field with only what the old one did not hold (``_rotate``). Limit: a write whose outcome
the process did not learn (an error after the store applied it), followed by the process
stalling for more than ``stale / 2``, may have that write's increment counted twice; clocks
of hosts must agree within ``stale / 2``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec

from cookiematch.clock import Clock
from cookiematch.dmp import keys
from cookiematch.dmp.funnel import Funnel, FunnelCounts
from cookiematch.errors import StorageError
from cookiematch.storage.base import Store
from cookiematch.storage.lease import Lease
from cookiematch.storage.moved_keys import move_into_maps

__all__ = ["STALE_SECONDS", "FunnelLog", "FunnelTotal", "read_total", "roll_up"]

log = logging.getLogger(__name__)

STALE_SECONDS = 3600.0
"""A process key not written for this long is rolled up into the total."""
ROLLUP_LEASE_SECONDS = 60.0


class FunnelTotal(msgspec.Struct):
    """The rolled-up counts, and the process keys they hold that are not deleted yet."""

    counts: FunnelCounts = msgspec.field(default_factory=FunnelCounts)
    folded: list[str] = msgspec.field(default_factory=list)


_counts = msgspec.json.Decoder(FunnelCounts)
_total = msgspec.json.Decoder(FunnelTotal)
_LEGACY = ((keys.LEGACY_FUNNEL_PREFIX, keys.FUNNEL_KEY),)


class FunnelLog:
    """Persists one process's counters in a field of its own (see the module's docstring)."""

    def __init__(
        self,
        store: Store,
        worker: str,
        funnel: Funnel,
        *,
        clock: Clock = time.time,
        stale: float = STALE_SECONDS,
    ) -> None:
        self._store = store
        self._worker = worker
        self._generation = 0
        self._field = worker
        self.funnel = funnel
        self._clock = clock
        self.stale = stale
        self._base = FunnelCounts()  # counted under this process's earlier keys
        self._written: FunnelCounts | None = None  # what its field holds, as last written
        self._written_at: float | None = None  # when that write started
        self._lock = asyncio.Lock()  # one flush at a time: a later snapshot is never overtaken

    @property
    def field(self) -> str:
        """Its field of ``keys.FUNNEL_KEY``."""
        return self._field

    async def flush(self) -> None:
        """Write this process's counts if they changed (or its field is due a refresh); a failed
        write leaves them marked changed, so the next flush writes them (they are cumulative:
        nothing is lost)."""
        async with self._lock:
            await self._flush()

    async def _flush(self) -> None:
        now = self._clock()
        if self._written_at is not None and now - self._written_at >= self.stale / 2:
            await self._rotate()
        refresh = self._written_at is not None and now - self._written_at >= self.stale / 6
        if not (self.funnel.changed or refresh):
            return
        self.funnel.changed = False
        try:
            counts = self.funnel.snapshot()
            counts.add(self._base, -1)
            counts.seen = now
            await self._store.hset(keys.FUNNEL_KEY, {self._field: msgspec.json.encode(counts)})
        except BaseException:
            self.funnel.changed = True
            raise
        self._written, self._written_at = counts, now

    async def _rotate(self) -> None:
        """Leave the current field to the roll-up: go on under a new one, counting from what
        the old one holds (read back: a write that failed may have been applied)."""
        raw = await self._store.hget(keys.FUNNEL_KEY, self._field)
        held = self._written if raw is None else _decode(raw)
        if held is not None:
            self._base.add(held)
        self._generation += 1
        self._field = f"{self._worker}~{self._generation}"
        self._written, self._written_at = None, None
        self.funnel.changed = True

    async def total(self) -> FunnelCounts:
        """This process's counts flushed, then every process's (``read_total``)."""
        await self.flush()
        return await read_total(self._store)


def _decode(raw: bytes) -> FunnelCounts | None:
    try:
        return _counts.decode(raw)
    except msgspec.DecodeError:
        return None  # not ours: skipped, as a reader does


async def _read_rollup(store: Store) -> FunnelTotal:
    raw = await store.get(keys.FUNNEL_TOTAL_KEY)
    if raw is None:
        return FunnelTotal()
    try:
        total = _total.decode(raw)
    except msgspec.DecodeError as exc:  # never overwritten by a roll-up: an operator looks
        raise StorageError(f"{keys.FUNNEL_TOTAL_KEY} does not hold a funnel total: {exc}") from exc
    total.folded = [_field_of(name) for name in total.folded]
    return total


def _field_of(name: str) -> str:
    """A folded process's field: an earlier version's total names its key."""
    return name.removeprefix(keys.LEGACY_FUNNEL_PREFIX)


async def _processes(store: Store) -> dict[str, bytes]:
    """Every process's field (an earlier version's keys moved in first, once per store)."""
    await move_into_maps(store, _LEGACY, keys.FUNNEL_MOVED_KEY)
    return await store.hgetall(keys.FUNNEL_KEY)


async def read_total(store: Store) -> FunnelCounts:
    """Every process's counts: the roll-up's total, then each field it does not hold."""
    rollup = await _read_rollup(store)
    total, folded = rollup.counts.copy(), set(rollup.folded)
    for field, value in (await _processes(store)).items():
        counts = None if field in folded else _decode(value)
        if counts is not None:
            total.add(counts)
    return total


async def roll_up(
    store: Store, holder: str, *, clock: Clock = time.time, stale: float = STALE_SECONDS
) -> int | None:
    """Add the fields not written for ``stale`` seconds into the total; delete those an
    earlier roll-up added. The fields added now (None: another process holds the lease)."""
    lease = Lease(store, keys.FUNNEL_ROLLUP_LEASE, holder, ttl=ROLLUP_LEASE_SECONDS, clock=clock)
    if not await lease.claim():
        return None
    try:
        return await lease.run(_fold(store, clock() - stale))
    finally:
        with contextlib.suppress(StorageError):
            await lease.release()


async def _fold(store: Store, before: float) -> int:
    rollup = await _read_rollup(store)
    done = set(rollup.folded)
    gone: list[str] = []
    fold: list[tuple[str, FunnelCounts]] = []
    for field, value in (await _processes(store)).items():
        if field in done:
            gone.append(field)
        elif (counts := _decode(value)) is not None and (
            counts.seen is None or counts.seen <= before
        ):
            fold.append((field, counts))  # seen None: written by an earlier version
    if gone:  # the total holds them: every reader already skips them
        await store.hdel(keys.FUNNEL_KEY, sorted(gone))
    if not fold and not rollup.folded:
        return 0
    for _, counts in fold:
        counts.seen = None
        rollup.counts.add(counts)
    rollup.folded = [field for field, _ in fold]
    await store.set(keys.FUNNEL_TOTAL_KEY, msgspec.json.encode(rollup))
    if fold:
        log.info(
            "funnel: rolled up the counts of %d processes gone", len(fold),
            extra={"event": "dmp.funnel.rollup", "keys": len(fold)},
        )  # fmt: skip
    return len(fold)
