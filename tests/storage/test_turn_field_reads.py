"""``storage/turn_field_reads.py`` over a real store: the reads of a turn in one call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from cookiematch.errors import StorageError
from cookiematch.storage import Store, open_store
from cookiematch.storage.turn_field_reads import TurnFieldReads


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    await store.hset("m:1", {"a": b"1", "b": b"2"})
    await store.hset("m:2", {"a": b"3"})
    yield store
    await store.close()


class Calls:
    """``store.hget_many``, each call's pairs remembered."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.made: list[list[tuple[str, str]]] = []

    async def __call__(self, pairs: Sequence[tuple[str, str]]) -> list[bytes | None]:
        self.made.append(list(pairs))
        return await self.store.hget_many(pairs)


async def test_the_reads_of_a_turn_are_one_call(store: Store) -> None:
    calls = Calls(store)
    reads = TurnFieldReads(calls)
    pairs = [("m:1", "a"), ("m:2", "a"), ("m:1", "z"), ("none", "a"), ("m:1", "a")]
    assert await asyncio.gather(*(reads.read(k, f) for k, f in pairs)) == [
        b"1", b"3", None, None, b"1",
    ]  # fmt: skip
    assert calls.made == [pairs]
    assert await reads.read("m:1", "b") == b"2"  # the next turn: a call of its own
    assert calls.made[1:] == [[("m:1", "b")]]


async def test_a_failed_call_fails_every_read_and_a_cancelled_one_leaves_the_rest(
    store: Store,
) -> None:
    async def broken(pairs: Sequence[tuple[str, str]]) -> list[bytes | None]:
        raise StorageError("the store answered with an error")

    failing = TurnFieldReads(broken)
    results = await asyncio.gather(
        failing.read("m:1", "a"), failing.read("m:2", "a"), return_exceptions=True
    )
    assert [type(r) for r in results] == [StorageError, StorageError]

    reads = TurnFieldReads(Calls(store))
    gone, kept = reads.read("m:1", "a"), reads.read("m:1", "b")
    gone.cancel()
    assert await kept == b"2"
    assert gone.cancelled()


def test_reads_left_by_a_stopped_loop_are_dropped(tmp_path: Path) -> None:
    """A loop that stopped before its turn ended leaves its reads; the next read, on another
    loop, drops them and is answered alone."""
    made: list[list[tuple[str, str]]] = []

    async def answer(pairs: Sequence[tuple[str, str]]) -> list[bytes | None]:
        made.append(list(pairs))
        return [b"v" for _ in pairs]

    reads = TurnFieldReads(answer)

    first = asyncio.new_event_loop()

    def ask_and_stop() -> None:
        reads.read("left", "f")  # its turn's end never comes: the loop stops first
        first.stop()

    first.call_soon(ask_and_stop)
    first.run_forever()
    first.close()

    async def ask() -> bytes | None:
        return await reads.read("asked", "f")

    assert asyncio.run(ask()) == b"v"
    assert made == [[("asked", "f")]]


async def test_outside_a_running_loop_is_an_error() -> None:
    reads = TurnFieldReads(lambda pairs: asyncio.sleep(0, []))
    with pytest.raises(RuntimeError):
        await asyncio.get_running_loop().run_in_executor(None, reads.read, "k", "f")
