"""The swaps made in one turn of the event loop sent to the store as one call.

A hot route that makes one ``swap_together`` or ``swap_many`` per request (the DMP's partner
callback, the buyer's ``/match``) pays the store's layers per request: the guard's deadline,
breaker and metrics, the backend's argument checks, the hand-over to the writer or the
pipeline. Gathered, the requests of one turn of the loop pay them once: each call queues its
writes here and waits for its own answer; at the end of the turn one call carries them all.
Every call is still answered only once its writes are stored, with what it would have been
answered alone, in order: a call that writes a key another gathered call writes or reads
after its writes starts a group of its own, sent once the one before it is answered (as is
a group that meets one of an earlier turn still in flight).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

from cookiematch.loops import running_loop
from cookiematch.storage.base import FieldWrite, Store, Write, check_ttl

__all__ = ["MAX_CALLS", "SwapCoalescer"]

MAX_CALLS = 256
"""Calls in one group at most: a Redis pipeline of one call stays within its bulk size."""

Maps = list[dict[str, bytes]]
"""``swap_together``'s answer: per field write what it held, then the maps read after."""
Values = list[bytes | None]
"""``swap_many``'s answer: per write what its key held."""


class _Group:
    """Calls of one kind merged into one store call; each caller's future."""

    __slots__ = ("futures",)

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[Any]] = []

    def keys(self) -> set[str]:
        """The keys it writes, answers or reads."""
        raise NotImplementedError

    def quiet_keys(self) -> set[str]:
        """The maps it writes without an answer (``also``)."""
        return set()

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
        strict, quiet = self.strict, self.quiet
        for write in writes:  # loops, not generators: a call writes a handful of keys
            strict.add(write.key)
        for key, _, _ in field_writes:
            strict.add(key)
        for key, _, _ in also:
            quiet.add(key)
        self.reads.update(read_after)
        self.counts.append((len(field_writes), len(read_after)))
        self.futures.append(answer)

    def keys(self) -> set[str]:
        return self.strict | self.reads

    def quiet_keys(self) -> set[str]:
        return self.quiet

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

    __slots__ = ("counts", "keys_written", "writes")

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[Write] = []
        self.keys_written: set[str] = set()
        self.counts: list[int] = []

    def takes(self, writes: Sequence[Write]) -> bool:
        keys = self.keys_written
        return all(write.key not in keys for write in writes)

    def add(self, writes: Sequence[Write], answer: asyncio.Future[Values]) -> None:
        self.writes += writes
        keys = self.keys_written
        for write in writes:
            keys.add(write.key)
        self.counts.append(len(writes))
        self.futures.append(answer)

    def keys(self) -> set[str]:
        return self.keys_written

    async def _call(self, store: Store) -> list[Any]:
        return await store.swap_many(self.writes)

    def _parts(self, answer: list[Any]) -> Iterator[list[Any]]:
        at = 0
        for count in self.counts:
            yield answer[at : at + count]
            at += count


class SwapCoalescer:
    """``store.swap_together`` and ``store.swap_many`` for many callers: the calls of one turn
    of the event loop go as one call (a group at a time where they meet or change kind, at
    most ``MAX_CALLS`` a group; see the module docstring); a call's failure is each of its
    group's callers' failure."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._groups: list[_Group] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop that will send them
        # the groups sent and not answered yet: per key, the latest that writes, answers or
        # reads it, and those that write it quietly
        self._writing: dict[str, asyncio.Task[None]] = {}
        self._quietly: dict[str, set[asyncio.Task[None]]] = {}
        self._sending: set[asyncio.Task[None]] = set()  # every one, kept alive until done

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
        loop = running_loop(self._loop)
        last = self._last(loop)
        if isinstance(last, _Together) and last.takes(writes, field_writes, also):
            group = last
        else:
            group = _Together()
            self._groups.append(group)
        answer: asyncio.Future[Maps] = loop.create_future()
        group.add(writes, field_writes, read_after, also, answer)
        return answer

    def swap_many(self, writes: Sequence[Write]) -> asyncio.Future[Values]:
        """``Store.swap_many``'s answer to this call, once its group is stored. A bad lifetime
        raises here, before anything is queued."""
        for write in writes:
            check_ttl(write.ttl)
        loop = running_loop(self._loop)
        last = self._last(loop)
        if isinstance(last, _Swaps) and last.takes(writes):
            group = last
        else:
            group = _Swaps()
            self._groups.append(group)
        answer: asyncio.Future[Values] = loop.create_future()
        group.add(writes, answer)
        return answer

    def _last(self, loop: asyncio.AbstractEventLoop) -> _Group | None:
        """The group a call may join, if it has room; the first call of a turn schedules the
        sending (what a loop that closed first left is dropped, its callers cancelled)."""
        groups = self._groups
        if self._loop is not loop:
            for stale in groups:
                stale.cancel()
            groups.clear()
            self._writing.clear()
            self._quietly.clear()
            self._sending.clear()
            self._loop = loop
        if groups:
            last = groups[-1]
            return last if len(last.futures) < MAX_CALLS else None
        loop.call_soon(self._send)  # at the end of this turn
        return None

    def _send(self) -> None:
        """Each group's call, started in order; one that meets a group sent before it (of
        this turn or an earlier one, not answered yet: a key one writes the other writes or
        reads, maps both write quietly aside) waits for that one's answer first. Groups that
        do not meet touch different keys, but for maps both write quietly, which every
        backend writes in the order the calls were queued."""
        groups, self._groups = self._groups, []
        writing, quietly = self._writing, self._quietly
        for group in groups:
            keys, quiet = group.keys(), group.quiet_keys()
            before: set[asyncio.Task[None]] = set()
            for key in keys:
                if (task := writing.get(key)) is not None:
                    before.add(task)
                if tasks := quietly.get(key):
                    before.update(tasks)
            for key in quiet:
                if (task := writing.get(key)) is not None:
                    before.add(task)
            task = asyncio.ensure_future(self._send_after(group, before))
            self._sending.add(task)
            for key in keys:
                writing[key] = task
            for key in quiet:
                quietly.setdefault(key, set()).add(task)
            task.add_done_callback(partial(self._answered, keys, quiet))

    def _answered(self, keys: set[str], quiet: set[str], task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        writing, quietly = self._writing, self._quietly
        for key in keys:
            if writing.get(key) is task:
                del writing[key]
        for key in quiet:
            tasks = quietly.get(key)
            if tasks is not None:
                tasks.discard(task)
                if not tasks:
                    del quietly[key]

    async def _send_after(self, group: _Group, before: set[asyncio.Task[None]]) -> None:
        if before:
            try:
                await asyncio.wait(before)
            except asyncio.CancelledError:
                group.cancel()
                raise
        await group.send(self._store)
