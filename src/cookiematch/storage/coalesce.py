"""The swaps made in one turn of the event loop sent to the store as one call.

A hot route that makes one ``swap_together`` or ``swap_many`` per request (the DMP's partner
callback, the buyer's ``/match``) pays the store's layers per request: the guard's deadline,
breaker and metrics, the backend's argument checks, the hand-over to the writer or the
pipeline. Gathered, the requests of one turn of the loop pay them once: each call queues its
writes here and waits for its own answer; at the end of the turn one call carries them all.
Every call is still answered only once its writes are stored, with what it would have been
answered alone, in order: a call that writes a key another gathered call writes or reads
after its writes starts a group of its own, sent after the one before has answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

from cookiematch.storage.base import FieldWrite, Store, Write, check_ttl

__all__ = ["SwapCoalescer"]

Maps = list[dict[str, bytes]]
"""``swap_together``'s answer: per field write what it held, then the maps read after."""
Values = list[bytes | None]
"""``swap_many``'s answer: per write what its key held."""


class _Group:
    """Calls of one kind merged into one store call; each caller's future."""

    __slots__ = ("futures",)

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[Any]] = []

    async def send(self, store: Store) -> None:
        """One call for the group; each caller's part of its answer, or its error."""
        try:
            answer = await self._call(store)
        except asyncio.CancelledError:
            self.cancel()
            raise
        except Exception as exc:
            for future in self.futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, part in zip(self.futures, self._parts(answer), strict=True):
            if not future.done():  # a caller that went away
                future.set_result(part)

    def cancel(self) -> None:
        """The callers told their call will not be made (the loop is closing)."""
        for future in self.futures:
            future.cancel()

    async def _call(self, store: Store) -> list[Any]:
        raise NotImplementedError

    def _parts(self, answer: list[Any]) -> Iterator[list[Any]]:
        raise NotImplementedError


class _Together(_Group):
    """``swap_together`` calls whose writes and reads do not meet."""

    __slots__ = (
        "also", "counts", "field_writes", "quiet", "read_after", "reads", "strict", "writes",
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[Write] = []
        self.field_writes: list[FieldWrite] = []
        self.read_after: list[str] = []
        self.also: list[FieldWrite] = []
        self.strict: set[str] = set()  # plain and answered map keys: once per group
        self.quiet: set[str] = set()  # the maps of ``also``
        self.reads: set[str] = set()
        self.counts: list[tuple[int, int]] = []  # per call: field writes answered, maps read

    def takes(
        self,
        writes: Sequence[Write],
        field_writes: Sequence[FieldWrite],
        also: Sequence[FieldWrite],
    ) -> bool:
        """Whether a call can join without its answer or the others' changing: the keys it
        writes neither answered nor read after by the group's calls, the maps it answers not
        written by them (``also`` maps may repeat: later wins, as in one call). The maps it
        reads after may be written by them: it comes after them, and sees their writes."""
        strict, quiet, reads = self.strict, self.quiet, self.reads
        for write in writes:
            if write.key in strict or write.key in reads:
                return False
        for key, _, _ in field_writes:
            if key in strict or key in reads or key in quiet:
                return False
        return all(key not in strict and key not in reads for key, _, _ in also)

    def add(
        self,
        writes: Sequence[Write],
        field_writes: Sequence[FieldWrite],
        read_after: Sequence[str],
        also: Sequence[FieldWrite],
        answer: asyncio.Future[Maps],
    ) -> None:
        self.writes += writes
        self.field_writes += field_writes
        self.read_after += read_after
        self.also += also
        self.strict.update(write.key for write in writes)
        self.strict.update(key for key, _, _ in field_writes)
        self.quiet.update(key for key, _, _ in also)
        self.reads.update(read_after)
        self.counts.append((len(field_writes), len(read_after)))
        self.futures.append(answer)

    async def _call(self, store: Store) -> list[Any]:
        return await store.swap_together(self.writes, self.field_writes, self.read_after, self.also)

    def _parts(self, answer: list[Any]) -> Iterator[list[Any]]:
        held, after = 0, len(self.field_writes)
        for answered, read in self.counts:
            yield answer[held : held + answered] + answer[after : after + read]
            held += answered
            after += read


class _Swaps(_Group):
    """``swap_many`` calls whose keys do not meet."""

    __slots__ = ("counts", "keys", "writes")

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[Write] = []
        self.keys: set[str] = set()
        self.counts: list[int] = []

    def takes(self, writes: Sequence[Write]) -> bool:
        keys = self.keys
        return all(write.key not in keys for write in writes)

    def add(self, writes: Sequence[Write], answer: asyncio.Future[Values]) -> None:
        self.writes += writes
        self.keys.update(write.key for write in writes)
        self.counts.append(len(writes))
        self.futures.append(answer)

    async def _call(self, store: Store) -> list[Any]:
        return await store.swap_many(self.writes)

    def _parts(self, answer: list[Any]) -> Iterator[list[Any]]:
        at = 0
        for count in self.counts:
            yield answer[at : at + count]
            at += count


class SwapCoalescer:
    """``store.swap_together`` and ``store.swap_many`` for many callers: the calls of one turn
    of the event loop go as one call (a group at a time where they meet or change kind, see
    the module docstring); a call's failure is each of its group's callers' failure."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._groups: list[_Group] = []
        self._sending: set[asyncio.Task[None]] = set()

    def swap_together(
        self,
        writes: Sequence[Write],
        field_writes: Sequence[FieldWrite],
        read_after: Sequence[str] = (),
        also: Sequence[FieldWrite] = (),
    ) -> asyncio.Future[Maps]:
        """``Store.swap_together``'s answer to this call, once its group is stored. A bad
        lifetime raises here, before anything is queued."""
        for write in writes:
            check_ttl(write.ttl)
        for _, _, ttl in field_writes:
            check_ttl(ttl)
        for _, _, ttl in also:
            check_ttl(ttl)
        last = self._last()
        group = (
            last if isinstance(last, _Together) and last.takes(writes, field_writes, also) else None
        )
        if group is None:
            group = _Together()
            self._groups.append(group)
        answer: asyncio.Future[Maps] = asyncio.get_running_loop().create_future()
        group.add(writes, field_writes, read_after, also, answer)
        return answer

    def swap_many(self, writes: Sequence[Write]) -> asyncio.Future[Values]:
        """``Store.swap_many``'s answer to this call, once its group is stored. A bad lifetime
        raises here, before anything is queued."""
        for write in writes:
            check_ttl(write.ttl)
        last = self._last()
        group = last if isinstance(last, _Swaps) and last.takes(writes) else None
        if group is None:
            group = _Swaps()
            self._groups.append(group)
        answer: asyncio.Future[Values] = asyncio.get_running_loop().create_future()
        group.add(writes, answer)
        return answer

    def _last(self) -> _Group | None:
        """The group a call may join; the first call of a turn schedules the sending."""
        if self._groups:
            return self._groups[-1]
        asyncio.get_running_loop().call_soon(self._send)  # at the end of this turn
        return None

    def _send(self) -> None:
        groups, self._groups = self._groups, []
        task = asyncio.ensure_future(self._send_in_order(groups))
        self._sending.add(task)  # kept alive until it is done
        task.add_done_callback(self._sending.discard)

    async def _send_in_order(self, groups: list[_Group]) -> None:
        for done, group in enumerate(groups):
            try:
                await group.send(self._store)
            except asyncio.CancelledError:
                for later in groups[done + 1 :]:
                    later.cancel()
                raise
