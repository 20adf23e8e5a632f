"""The field reads asked during one turn of the event loop, made as one store call at its end.

A hot route that reads one field per request (``/bid``'s look-up of the gid's bucketed entry)
pays the store's layers per read: the guard's deadline, breaker and metrics, the backend's
operation and its future, the pipeline's bookkeeping. Under load a turn of the loop carries
dozens of requests; their reads wait together here and, once the turn's callbacks ran, go as
one ``hget_many`` (on Redis one pipeline op of one ``HGET`` each), through whatever the caller
passes: the guard's call, under one deadline. Each read is answered with its own value; a
failed call fails every read of it with its error.

What a read sees is what the call sees: on Redis, every write queued on the same store before
it (one connection, in order), as a lone ``hget`` would. The reads of a turn still waiting
when that loop stopped (tests run one loop after another) are dropped at the next read on
another loop: nobody is left to await them. ``SQLiteStore.get_batched`` reads a turn's plain
values on the loop's own thread instead (``storage/sqlite_turn.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from cookiematch.loops import running_loop

__all__ = ["ReadMany", "TurnFieldReads"]

ReadMany = Callable[[Sequence[tuple[str, str]]], Awaitable[list[bytes | None]]]
"""``hget_many``: the value of each ``(key, field)``, in order (None where there is none)."""


class TurnFieldReads:
    """``(key, field)`` reads of one turn of the event loop, made as one ``read_many`` call."""

    __slots__ = ("_futures", "_loop", "_pairs", "_read_many", "_sending")

    def __init__(self, read_many: ReadMany) -> None:
        self._read_many = read_many
        self._loop: asyncio.AbstractEventLoop | None = None  # that of the reads waiting
        self._pairs: list[tuple[str, str]] = []
        self._futures: list[asyncio.Future[bytes | None]] = []
        self._sending: set[asyncio.Task[None]] = set()  # kept alive until done

    def read(self, key: str, field: str) -> asyncio.Future[bytes | None]:
        """The value of ``field`` in the map ``key``, read with the other reads of this turn
        once its callbacks ran. RuntimeError outside a running event loop."""
        loop = running_loop(self._loop)
        future: asyncio.Future[bytes | None] = loop.create_future()
        pairs = self._pairs
        if pairs and self._loop is not loop:
            pairs.clear()  # asked on a loop that stopped before reading them
            self._futures.clear()
        if not pairs:
            self._loop = loop
            loop.call_soon(self._send)
        pairs.append((key, field))
        self._futures.append(future)
        return future

    def _send(self) -> None:
        pairs, futures = self._pairs, self._futures
        if not pairs:  # dropped
            return
        self._pairs, self._futures = [], []
        loop = self._loop
        assert loop is not None  # (set by the read that scheduled this)
        task = loop.create_task(self._answer(pairs, futures))  # no loop look-up
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _answer(
        self, pairs: list[tuple[str, str]], futures: list[asyncio.Future[bytes | None]]
    ) -> None:
        try:
            values = await self._read_many(pairs)
        except asyncio.CancelledError:  # the loop is closing: nobody will be answered
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:  # every read fails with it: none is left waiting
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, value in zip(futures, values, strict=True):
            if not future.done():  # not cancelled
                future.set_result(value)
