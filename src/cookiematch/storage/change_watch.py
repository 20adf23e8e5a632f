"""Whether a record every worker reads whole again and again changed since it last read it.

A worker's view of records changed through any worker (the exchange's buyers, user lists and
credentials; the DMP's partners, segments and destinations) is rebuilt every second or two
from the field maps that hold them. Reading and decoding them costs what they hold, on the
event loop: tens of milliseconds for thousands of entries, every refresh of every worker.
Each writer of such a record therefore writes a new random token to a key of its own once
the change is stored (``announce``), and a reader reads that token first
(``read_if_changed``): the record is read only when the token is not the one it was last
read with, or when that reading is ``FULL_READ_SECONDS`` old.

A change is stored before its token, and the token is read before the record, so a reader
that finds the token unchanged has already read every change made before it. The reading
every ``FULL_READ_SECONDS`` takes in what was written without a token: an earlier version's
worker during an upgrade, a ``cookiematch store copy`` into a live store, a writer stopped
between its change and its token.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cookiematch.clock import Clock
from cookiematch.storage.base import Store

__all__ = ["FULL_READ_SECONDS", "ChangeWatch"]

FULL_READ_SECONDS = 60.0
"""The record is read at least this often, whatever its token."""

T = TypeVar("T")

_UNREAD = b"(not read yet)"  # no token is this (they are 16 hex digits)


class ChangeWatch:
    """The change token at ``key`` of one record: announced by its writers, checked by its
    readers (see the module docstring)."""

    def __init__(self, store: Store, key: str, *, monotonic: Clock = time.monotonic) -> None:
        self._store = store
        self.key = key
        self._monotonic = monotonic
        self._token: bytes | None = _UNREAD  # the token the record was last read with
        self._read_at = 0.0  # when (``monotonic``)

    async def announce(self) -> None:
        """A new token, once a change of the record is stored."""
        await self._store.set(self.key, os.urandom(8).hex().encode())

    async def read_if_changed(self, read: Callable[[], Awaitable[T]]) -> T | None:
        """``read()``'s answer, or None without calling it while the token is the one the
        record was last read with and that reading is less than ``FULL_READ_SECONDS`` old."""
        token = await self._store.get(self.key)
        now = self._monotonic()
        if token == self._token and now - self._read_at < FULL_READ_SECONDS:
            return None
        found = await read()
        self._token, self._read_at = token, now
        return found
