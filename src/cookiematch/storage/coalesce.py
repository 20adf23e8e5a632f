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
from typing import Any

from cookiematch.loops import running_loop
from cookiematch.storage.base import FieldWrite, Store, Write, check_ttl

__all__ = ["MAX_CALLS", "SwapCoalescer"]

MAX_CALLS = 256
"""Calls in one group at most: a Redis pipeline of one call stays within its bulk size."""
_TTLS_KEPT = 16  # valid lifetimes remembered, so that a caller's constants are checked once

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

    def join(
        self,
        writes: Sequence[Write],
        field_writes: Sequence[FieldWrite],
        read_after: Sequence[str],
        also: Sequence[FieldWrite],
        answer: asyncio.Future[Maps],
    ) -> bool:
        """Add the call unless it would change its answer or the others': the keys it writes
        neither answered nor read after by the group's calls, the maps it answers not written
        by them (``also`` maps may repeat: later wins, as in one call). The maps it reads after
        may be written by them: it comes after them, and sees their writes. Plain loops, not
        generators: a call writes a handful of keys."""
        strict, quiet, reads = self.strict, self.quiet, self.reads
        for write in writes:
            if write.key in strict or write.key in reads:
                return False
        for key, _, _ in field_writes:
            if key in strict or key in reads or key in quiet:
                return False
        for key, _, _ in also:
            if key in strict or key in reads:
                return False
        self.writes += writes
        self.field_writes += field_writes
        self.read_after += read_after
        self.also += also
        for write in writes:
            strict.add(write.key)
        for key, _, _ in field_writes:
            strict.add(key)
        for key, _, _ in also:
            quiet.add(key)
        reads.update(read_after)
        self.counts.append((len(field_writes), len(read_after)))
        self.futures.append(answer)
        return True

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

    def join(self, writes: Sequence[Write], answer: asyncio.Future[Values]) -> bool:
        """Add the call unless a key it writes is written by the group's calls."""
        keys = self.keys_written
        for write in writes:
            if write.key in keys:
                return False
        self.writes += writes
        for write in writes:
            keys.add(write.key)
        self.counts.append(len(writes))
        self.futures.append(answer)
        return True

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
        # the groups sent and not answered yet (kept alive until done), each with the keys it
        # writes, answers or reads and the maps it writes quietly
        self._sending: dict[asyncio.Task[None], tuple[set[str], set[str]]] = {}
        self._ttls: set[float | None] = {None}  # lifetimes already found valid

    def _check_ttl(self, ttl: float | None) -> None:
        """``check_ttl``, remembering a few valid lifetimes: callers pass their constants."""
        check_ttl(ttl)
        if len(self._ttls) < _TTLS_KEPT:
            self._ttls.add(ttl)

    def swap_together(
        self,
        writes: Sequence[Write],
        field_writes: Sequence[FieldWrite],
        read_after: Sequence[str] = (),
        also: Sequence[FieldWrite] = (),
    ) -> asyncio.Future[Maps]:
        """``Store.swap_together``'s answer to this call, once its group is stored. A bad
        lifetime raises here, before anything is queued."""
        ttls = self._ttls
        for write in writes:
            if write.ttl not in ttls:
                self._check_ttl(write.ttl)
        for _, _, ttl in field_writes:
            if ttl not in ttls:
                self._check_ttl(ttl)
        for _, _, ttl in also:
            if ttl not in ttls:
                self._check_ttl(ttl)
        loop = running_loop(self._loop)
        answer: asyncio.Future[Maps] = loop.create_future()
        last = self._last(loop)
        if not isinstance(last, _Together) or not last.join(
            writes, field_writes, read_after, also, answer
        ):
            group = _Together()
            self._groups.append(group)
            group.join(writes, field_writes, read_after, also, answer)
        return answer

    def swap_many(self, writes: Sequence[Write]) -> asyncio.Future[Values]:
        """``Store.swap_many``'s answer to this call, once its group is stored. A bad lifetime
        raises here, before anything is queued."""
        ttls = self._ttls
        for write in writes:
            if write.ttl not in ttls:
                self._check_ttl(write.ttl)
        loop = running_loop(self._loop)
        answer: asyncio.Future[Values] = loop.create_future()
        last = self._last(loop)
        if not (isinstance(last, _Swaps) and last.join(writes, answer)):
            group = _Swaps()
            self._groups.append(group)
            group.join(writes, answer)
        return answer

    def _last(self, loop: asyncio.AbstractEventLoop) -> _Group | None:
        """The group a call may join, if it has room; the first call of a turn schedules the
        sending (what a loop that closed first left is dropped, its callers cancelled)."""
        groups = self._groups
        if self._loop is not loop:
            for stale in groups:
                stale.cancel()
            groups.clear()
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
        backend writes in the order the calls were queued. The keys are compared a group
        at a time (set against set), not a key at a time: groups in flight are few."""
        groups, self._groups = self._groups, []
        sending, loop = self._sending, self._loop
        assert loop is not None  # (set by the call that scheduled this)
        for group in groups:
            keys, quiet = group.keys(), group.quiet_keys()
            before = {
                task
                for task, (their_keys, their_quiet) in sending.items()
                if not (
                    keys.isdisjoint(their_keys)
                    and keys.isdisjoint(their_quiet)
                    and quiet.isdisjoint(their_keys)
                )
            }
            task = loop.create_task(self._send_after(group, before))  # no loop look-up
            sending[task] = (keys, quiet)
            task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Task[None]) -> None:
        self._sending.pop(task, None)

    async def _send_after(self, group: _Group, before: set[asyncio.Task[None]]) -> None:
        if before:
            try:
                await asyncio.wait(before)
            except asyncio.CancelledError:
                group.cancel()
                raise
        await group.send(self._store)
