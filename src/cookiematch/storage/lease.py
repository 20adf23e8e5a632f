"""A lease: a store key with a TTL that one holder at a time claims, to run a job alone.

    claim ── set_if_absent(key, holder, ttl) ──▶ held: renewed (set, same TTL) every third of
                                                 the TTL while the job runs; released (delete)
                                                 when it ends

The holder renews and releases only while its claim is surely live: less than ``SAFE`` of the
TTL since it last claimed or renewed, on the store's clock, the time read *before* the write
(the store computes the expiry later). So it never overwrites nor deletes another holder's
claim; past that point the lease is lost and the job is cancelled (``LeaseLost``). A holder
that dies just lets the key expire; the others can claim it after at most one TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import TypeVar

from cookiematch.clock import Clock
from cookiematch.errors import LeaseLost, StorageError
from cookiematch.storage.base import Store

T = TypeVar("T")

SAFE = 0.75
"""Fraction of the TTL after a claim or renewal within which the claim counts as held: the
rest is a margin for the write's latency and a Redis server's clock drift."""


class Lease:
    """One holder's handle on the lease at ``key`` (a plain key; ``holder`` is its value)."""

    def __init__(
        self,
        store: Store,
        key: str,
        holder: str,
        *,
        ttl: float,
        clock: Clock = time.time,
        renew_every: float | None = None,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"a lease needs a positive ttl, not {ttl!r}")
        self._store = store
        self.key = key
        self.holder = holder
        self.ttl = ttl
        self._clock = clock
        self.renew_every = ttl / 3 if renew_every is None else renew_every
        self._since: float | None = None  # when the live claim was last written

    @property
    def since(self) -> float | None:
        """When this holder last claimed or renewed (None: it does not hold the lease)."""
        return self._since

    @property
    def held(self) -> bool:
        return self._since is not None and self._clock() < self._since + self.ttl * SAFE

    async def claim(self) -> bool:
        """Take the lease if nobody holds it; True if this holder now does."""
        started = self._clock()
        if await self._store.set_if_absent(self.key, self.holder.encode(), ttl=self.ttl):
            self._since = started
            return True
        return False

    async def renew(self) -> None:
        """Extend the claim by a TTL; LeaseLost if it is no longer surely held."""
        if not self.held:
            self._since = None
            raise LeaseLost(f"lease {self.key!r} lapsed before it was renewed")
        started = self._clock()
        try:
            await self._store.set(self.key, self.holder.encode(), ttl=self.ttl)
        except StorageError as exc:
            raise LeaseLost(f"lease {self.key!r} could not be renewed: {exc}") from exc
        self._since = started

    async def release(self) -> None:
        """Give the lease back now if it is still surely held (else let it expire)."""
        held, self._since = self.held, None
        if held:
            await self._store.delete(self.key)

    async def run(self, work: Awaitable[T]) -> T:
        """Await ``work`` while renewing the claim every ``renew_every`` seconds; cancel it and
        raise LeaseLost if a renewal fails. The caller claims before and releases after."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.renew_every)
                if done:
                    return task.result()
                await self.renew()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def holder_of(store: Store, key: str) -> str | None:
    """Who holds the lease at ``key`` now (None: nobody)."""
    raw = await store.get(key)
    return None if raw is None else raw.decode(errors="replace")
