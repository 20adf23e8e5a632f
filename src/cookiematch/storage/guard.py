"""A store with a deadline on every call and a circuit breaker, for calls made from a request.

    handler ──▶ GuardedStore ──(breaker closed? queue under its bound?)──▶ backend
                     │  every call under its deadline (``deadlines.py``: asyncio.timeout's
                     │  semantics, the calls' limits queued behind one loop timer)
                     └─ StoreUnavailable, or deadline misses and a failed probe, open the
                        breaker (``breaker.py``)

A call over its deadline raises StoreUnavailable (the caller answers its protocol's error
status) and counts as a miss (misses in a row start a probe that decides); a StoreUnavailable
from the backend opens the breaker at once.
While the breaker is open every call fails at once with StoreUnavailable until the breaker's
probe sees the store back. Writes queued without waiting (``Durability.ASYNC``) are refused at
once, counted in ``lost``, while ``backlog`` is at ``max_backlog``.

A cancelled call is not undone: a write past its deadline may still land (the Redis flusher
drops it from its retries, SQLite's writer commits every write queued to it). Calls that take
long by nature (CLI commands, DMP batches, exports, the flusher's own retries) use the backend
directly, with its own longer windows. ``view(deadline)`` is the same guard (one breaker, one
count of refused writes) with another deadline: the admin API's.

``on_call(op, seconds, outcome)`` hears every call; outcomes are ``CALL_OUTCOMES``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cookiematch.deadlines import Deadlines
from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.storage.base import Durability, FieldEntry, FieldWrite, Page, Store, Write
from cookiematch.storage.breaker import Breaker, StateObserver
from cookiematch.storage.turn_field_reads import TurnFieldReads

__all__ = ["CALL_OUTCOMES", "MAX_BACKLOG", "PROBE_KEY", "CallObserver", "GuardedStore"]

T = TypeVar("T")

CallObserver = Callable[[str, float, str], None]
"""Told ``(operation, seconds, outcome)`` after every call."""

CALL_OUTCOMES = ("ok", "error", "unavailable", "timeout", "refused", "queue_full")
"""ok; error (a StorageError, the store answered); unavailable (StoreUnavailable); timeout
(over the deadline); refused (the breaker is open); queue_full (a queued write refused)."""

MAX_BACKLOG = 10_000
"""Queued writes nobody waits for, beyond which more are refused (the backends' own
``max_pending``, where they would make the writer wait instead)."""

PROBE_KEY = "cookiematch:guard:probe"
"""Written by the breaker's probe after a ping (``set_if_absent``, which waits for its result
whatever the durability): through the backend's queues and write lock, as requests' writes
are, so a store that answers pings but takes no writes (a locked SQLite file) stays open."""
PROBE_TTL = 60.0  # seconds the probe's key lives


@dataclass(slots=True)
class _Shared:
    """What every view of one guard shares."""

    breaker: Breaker
    max_backlog: int
    on_call: CallObserver | None
    queue_refused: int = 0


class GuardedStore(Store):
    """``inner`` behind deadlines and a breaker; closing it closes ``inner``."""

    def __init__(
        self,
        inner: Store,
        *,
        deadline: float,
        name: str = "store",
        max_backlog: int = MAX_BACKLOG,
        on_call: CallObserver | None = None,
        on_state: StateObserver | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        if not deadline > 0:
            raise ValueError(f"deadline must be positive seconds, not {deadline!r}")
        self.inner = inner
        self.deadline = deadline
        self._limits = Deadlines()  # one deadline for every call: one loop timer at a time
        self.durability = inner.durability
        self._queued = inner.durability is Durability.ASYNC
        if breaker is None:
            breaker = Breaker(name, self._probe, on_state=on_state)
        self._shared = _Shared(breaker, max_backlog, on_call)
        self._field_reads = TurnFieldReads(self.hget_many)  # hget_batched's, a turn's at once

    def view(self, deadline: float) -> GuardedStore:
        """The same guard (breaker, counts, observer) with another deadline."""
        other = GuardedStore(self.inner, deadline=deadline, breaker=self._shared.breaker)
        other._shared = self._shared
        return other

    # --- state ------------------------------------------------------------------------------

    @property
    def breaker(self) -> Breaker:
        """The breaker every view of this guard shares."""
        return self._shared.breaker

    @property
    def breaker_open(self) -> bool:
        return self._shared.breaker.open

    @property
    def over_backlog(self) -> bool:
        return self._queued and self.inner.backlog >= self._shared.max_backlog

    @property
    def lost(self) -> int:
        """The backend's lost writes and the queued writes refused here."""
        return self.inner.lost + self._shared.queue_refused

    @property
    def backlog(self) -> int:
        return self.inner.backlog

    @property
    def max_backlog(self) -> int:
        """The bound on ``backlog`` past which queued writes are refused."""
        return self._shared.max_backlog

    @property
    def batches(self) -> tuple[int, int]:
        return self.inner.batches

    # --- the guard --------------------------------------------------------------------------

    async def _probe(self) -> None:
        await self.inner.ping()
        await self.inner.set_if_absent(PROBE_KEY, b"", ttl=PROBE_TTL)

    def _observe(self, op: str, started: float, outcome: str) -> None:
        on_call = self._shared.on_call
        if on_call is not None:
            on_call(op, time.monotonic() - started, outcome)

    def _admit(self, op: str, *, queued_write: bool = False) -> float:
        """Raise StoreUnavailable at once if the call may not start; else its start time."""
        started = time.monotonic()
        try:
            self._shared.breaker.check()
        except StoreUnavailable:
            self._observe(op, started, "refused")
            raise
        if queued_write and self.over_backlog:
            self._shared.queue_refused += 1
            self._observe(op, started, "queue_full")
            raise StoreUnavailable(
                f"{self.inner.backlog} queued writes wait for the store (bound "
                f"{self._shared.max_backlog}): this one is refused"
            )
        return started

    async def _guarded(self, op: str, started: float, call: Awaitable[T]) -> T:
        """Await ``call`` (the backend's coroutine, made once ``_admit`` let the call start:
        ``self._guarded(op, self._admit(op), inner.op(...))`` evaluates in that order) under
        the deadline, and tell the breaker and the observer how it ended."""
        breaker = self._shared.breaker
        limit = self._limits.enter(self.deadline)  # in this frame: no coroutine of its own
        try:
            result = await call
        except asyncio.CancelledError:
            if not limit.timed_out():
                raise
            raise self._missed(op, started) from None
        except TimeoutError:
            raise self._missed(op, started) from None
        except StoreUnavailable as exc:
            self._observe(op, started, "unavailable")
            breaker.trip(str(exc))
            raise
        except StorageError:
            self._observe(op, started, "error")
            breaker.succeeded()  # the store answered
            raise
        finally:
            limit.leave()
        self._observe(op, started, "ok")
        breaker.succeeded()
        return result

    def _missed(self, op: str, started: float) -> StoreUnavailable:
        """A call past its deadline: counted, told to the breaker, and the error to raise."""
        self._observe(op, started, "timeout")
        miss = f"{op} over {self.deadline * 1000:.0f} ms"
        self._shared.breaker.missed(miss)
        return StoreUnavailable(f"no answer from the store within the deadline: {miss}")

    async def _scan(self, op: str, items: AsyncIterator[T]) -> AsyncIterator[T]:
        """Each step of a scan is one call (its own deadline)."""
        while True:
            try:
                item = await self._guarded(op, self._admit(op), anext(items))
            except StopAsyncIteration:
                return
            yield item

    # --- the interface ----------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return await self._guarded("get", self._admit("get"), self.inner.get(key))

    @property
    def batched_reads(self) -> bool:  # type: ignore[override]
        return self.inner.batched_reads

    async def get_batched(self, key: str) -> bytes | None:
        """The backend's ``get_batched``: admitted by the breaker, counted and timed as a
        ``get``; no deadline (it is read within this turn of the event loop). Admitted inline
        while the breaker is closed (the hot path's: no ``_admit`` call)."""
        shared = self._shared
        breaker = shared.breaker
        started = self._admit("get") if breaker.open else time.monotonic()
        try:
            result = await self.inner.get_batched(key)
        except StoreUnavailable as exc:
            self._observe("get", started, "unavailable")
            breaker.trip(str(exc))
            raise
        except StorageError:
            self._observe("get", started, "error")
            breaker.succeeded()
            raise
        on_call = shared.on_call
        if on_call is not None:
            on_call("get", time.monotonic() - started, "ok")
        breaker.succeeded()
        return result

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._guarded("get_many", self._admit("get_many"), self.inner.get_many(keys))

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._guarded(
            "set",
            self._admit("set", queued_write=self._queued),
            self.inner.set(key, value, ttl=ttl),
        )

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        return await self._guarded(
            "set_if_absent",
            self._admit("set_if_absent"),
            self.inner.set_if_absent(key, value, ttl=ttl),
        )

    async def write_many(self, writes: Sequence[Write]) -> None:
        await self._guarded(
            "write_many",
            self._admit("write_many", queued_write=self._queued),
            self.inner.write_many(writes),
        )

    async def swap_many(self, writes: Sequence[Write]) -> list[bytes | None]:
        return await self._guarded(
            "swap_many", self._admit("swap_many"), self.inner.swap_many(writes)
        )

    async def write_together(
        self, writes: Sequence[Write], field_writes: Sequence[FieldWrite]
    ) -> None:
        await self._guarded(
            "write_together",
            self._admit("write_together", queued_write=self._queued),
            self.inner.write_together(writes, field_writes),
        )

    async def swap_together(
        self,
        writes: Sequence[Write],
        field_writes: Sequence[FieldWrite],
        read_after: Sequence[str] = (),
        also: Sequence[FieldWrite] = (),
    ) -> list[dict[str, bytes]]:
        return await self._guarded(
            "swap_together",
            self._admit("swap_together"),
            self.inner.swap_together(writes, field_writes, read_after, also),
        )

    async def delete(self, key: str) -> bool:
        return await self._guarded("delete", self._admit("delete"), self.inner.delete(key))

    async def hget(self, key: str, field: str) -> bytes | None:
        return await self._guarded("hget", self._admit("hget"), self.inner.hget(key, field))

    async def hget_many(self, pairs: Sequence[tuple[str, str]]) -> list[bytes | None]:
        return await self._guarded(
            "hget_many", self._admit("hget_many"), self.inner.hget_many(pairs)
        )

    def hget_batched(self, key: str, field: str) -> Awaitable[bytes | None]:
        """The reads of this turn of the event loop as one ``hget_many`` once its callbacks
        ran (``storage/turn_field_reads.py``): one call for them all, under one deadline,
        admitted, counted and timed once."""
        return self._field_reads.read(key, field)

    async def hgetall(self, key: str) -> dict[str, bytes]:
        return await self._guarded("hgetall", self._admit("hgetall"), self.inner.hgetall(key))

    async def hset(
        self, key: str, mapping: Mapping[str, bytes], *, ttl: float | None = None
    ) -> None:
        await self._guarded(
            "hset",
            self._admit("hset", queued_write=self._queued),
            self.inner.hset(key, mapping, ttl=ttl),
        )

    async def hset_many(self, items: Sequence[FieldWrite]) -> None:
        await self._guarded(
            "hset_many",
            self._admit("hset_many", queued_write=self._queued),
            self.inner.hset_many(items),
        )

    async def hswap_many(self, items: Sequence[FieldWrite]) -> list[dict[str, bytes]]:
        return await self._guarded(
            "hswap_many", self._admit("hswap_many"), self.inner.hswap_many(items)
        )

    async def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, bytes]]:
        return await self._guarded(
            "hgetall_many", self._admit("hgetall_many"), self.inner.hgetall_many(keys)
        )

    async def get_entry(self, key: str) -> FieldEntry | None:
        return await self._guarded("get_entry", self._admit("get_entry"), self.inner.get_entry(key))

    async def hgetall_entries(self, key: str) -> dict[str, FieldEntry]:
        return await self._guarded(
            "hgetall_entries", self._admit("hgetall_entries"), self.inner.hgetall_entries(key)
        )

    async def hdel(self, key: str, fields: Sequence[str]) -> int:
        return await self._guarded("hdel", self._admit("hdel"), self.inner.hdel(key, fields))

    def scan(self, prefix: str, *, batch: int = 1000) -> AsyncIterator[tuple[str, bytes]]:
        return self._scan("scan", self.inner.scan(prefix, batch=batch))

    def scan_pages(
        self, prefix: str, *, batch: int = 1000, in_order: bool = True
    ) -> AsyncIterator[Page]:
        pages = self.inner.scan_pages(prefix, batch=batch, in_order=in_order)
        return self._scan("scan_pages", pages)

    def scan_ttl(
        self, prefix: str, *, batch: int = 1000, in_order: bool = True
    ) -> AsyncIterator[tuple[str, bytes, float | None]]:
        return self._scan("scan_ttl", self.inner.scan_ttl(prefix, batch=batch, in_order=in_order))

    def scan_maps(
        self, prefix: str, *, batch: int = 100, in_order: bool = True
    ) -> AsyncIterator[tuple[str, dict[str, FieldEntry]]]:
        return self._scan("scan_maps", self.inner.scan_maps(prefix, batch=batch, in_order=in_order))

    async def start(self) -> None:
        await self.inner.start()

    async def info(self) -> dict[str, str]:
        facts = await self._guarded("info", self._admit("info"), self.inner.info())
        facts["breaker"] = "open" if self.breaker_open else "closed"
        return facts

    async def ping(self) -> None:
        """The backend's ping (no deadline: the caller gives its own); a StoreUnavailable
        opens the breaker; StoreUnavailable at once while it is open."""
        started = self._admit("ping")
        try:
            await self.inner.ping()
        except StoreUnavailable as exc:
            self._observe("ping", started, "unavailable")
            self._shared.breaker.trip(str(exc))
            raise
        self._observe("ping", started, "ok")

    async def close(self) -> None:
        await self._shared.breaker.close()
        await self.inner.close()
