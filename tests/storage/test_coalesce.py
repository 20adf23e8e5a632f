"""``SwapCoalescer``: the ``swap_together`` and ``swap_many`` calls of one turn of the event
loop as one store call, each caller answered as if alone, on every backend (a real store
behind the guard, whose call observer counts the calls that reach it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cookiematch.errors import StorageError
from cookiematch.storage import Write
from cookiematch.storage.coalesce import MAX_CALLS, SwapCoalescer
from cookiematch.storage.guard import GuardedStore

from .conftest import MakeStore


class Observed:
    """A guarded real store and the store calls that reached it, by operation."""

    def __init__(self, make_store: MakeStore) -> None:
        self.calls: list[tuple[str, str]] = []
        self.store = GuardedStore(
            make_store(),
            deadline=5.0,
            on_call=lambda op, _seconds, outcome: self.calls.append((op, outcome)),
        )
        self.swaps = SwapCoalescer(self.store)

    def swaps_sent(self, op: str = "swap_together") -> list[str]:
        return [outcome for called, outcome in self.calls if called == op]


@pytest.fixture
def observed(make_store: MakeStore) -> Observed:
    return Observed(make_store)


async def test_one_turns_calls_go_as_one_and_each_gets_its_own_answer(observed: Observed) -> None:
    store, swaps = observed.store, observed.swaps
    await store.hset("m1", {"a": b"old1"})
    await store.hset("w2", {"x": b"waits"})
    answers = await asyncio.gather(
        swaps.swap_together([Write("r1", b"1")], [("m1", {"a": b"new1"}, None)], ["w1"]),
        swaps.swap_together([Write("r2", b"2")], [("m2", {"a": b"new2"}, None)], ["w2"]),
        swaps.swap_together([], [("m3", {"b": b"3"}, None), ("m1x", {"c": b"4"}, None)]),
    )
    assert answers == [[{"a": b"old1"}, {}], [{}, {"x": b"waits"}], [{}, {}]]
    assert observed.swaps_sent() == ["ok"]  # one call for the three
    assert await store.get_many(["r1", "r2"]) == [b"1", b"2"]
    assert await store.hgetall_many(["m1", "m2", "m3", "m1x"]) == [
        {"a": b"new1"}, {"a": b"new2"}, {"b": b"3"}, {"c": b"4"},
    ]  # fmt: skip


async def test_calls_of_later_turns_go_apart(observed: Observed) -> None:
    first = await observed.swaps.swap_together([Write("r", b"1")], [("m", {"f": b"1"}, None)])
    second = await observed.swaps.swap_together([Write("r", b"2")], [("m", {"f": b"2"}, None)])
    assert (first, second) == ([{}], [{"f": b"1"}])
    assert observed.swaps_sent() == ["ok", "ok"]


async def test_a_map_written_twice_in_a_turn_is_answered_in_order(observed: Observed) -> None:
    swaps = observed.swaps
    answers = await asyncio.gather(
        swaps.swap_together([], [("m", {"f": b"1"}, None)]),
        swaps.swap_together([], [("other", {"f": b"x"}, None)]),
        swaps.swap_together([], [("m", {"f": b"2"}, None)]),  # meets the first: a group after
    )
    assert answers == [[{}], [{}], [{"f": b"1"}]]
    assert observed.swaps_sent() == ["ok", "ok"]
    assert await observed.store.hgetall("m") == {"f": b"2"}


async def test_reads_after_see_the_writes_before_them_not_after(observed: Observed) -> None:
    swaps = observed.swaps
    answers = await asyncio.gather(
        swaps.swap_together([], [("a", {"f": b"1"}, None)], ["w"]),
        swaps.swap_together([], [("w", {"g": b"2"}, None)]),  # writes what the first read
        swaps.swap_together([], [("b", {"f": b"3"}, None)], ["w"]),
    )
    assert answers == [[{}, {}], [{}], [{}, {"g": b"2"}]]
    assert observed.swaps_sent() == ["ok", "ok"]


async def test_quiet_writes_may_repeat_but_not_meet_an_answered_map(observed: Observed) -> None:
    swaps = observed.swaps
    answers = await asyncio.gather(
        swaps.swap_together([], [("p1", {"f": b"1"}, None)], also=[("marks", {"p1": b"t"}, None)]),
        swaps.swap_together([], [("p2", {"f": b"2"}, None)], also=[("marks", {"p2": b"t"}, None)]),
        swaps.swap_together([], [("marks", {"p1": b"u"}, None)]),  # answers a quiet map
    )
    assert answers == [[{}], [{}], [{"p1": b"t"}]]
    assert observed.swaps_sent() == ["ok", "ok"]
    assert await observed.store.hgetall("marks") == {"p1": b"u", "p2": b"t"}


async def test_a_failed_call_fails_each_of_its_callers(make_store: MakeStore) -> None:
    observed = Observed(make_store)
    await observed.store.inner.close()  # the backend gone: its call fails
    results = await asyncio.gather(
        observed.swaps.swap_together([Write("r1", b"1")], []),
        observed.swaps.swap_together([Write("r2", b"2")], []),
        return_exceptions=True,
    )
    assert all(isinstance(result, StorageError) for result in results), results
    assert len(observed.swaps_sent()) == 1


async def test_a_bad_lifetime_raises_at_once_and_queues_nothing(observed: Observed) -> None:
    with pytest.raises(ValueError, match="ttl"):
        observed.swaps.swap_together([], [("m", {"f": b"1"}, -1.0)])
    with pytest.raises(ValueError, match="ttl"):
        observed.swaps.swap_together([Write("r", b"1", 0.0)], [])
    assert await observed.swaps.swap_together([], [("m", {"f": b"2"}, None)]) == [{}]
    assert observed.swaps_sent() == ["ok"]


async def test_a_bad_lifetime_raises_after_many_good_ones(observed: Observed) -> None:
    """The valid lifetimes it remembers (a caller's constants) never let a bad one through,
    wherever it comes (a write, a field write, a quiet one, a swap), before or after it
    stopped remembering more."""
    swaps = observed.swaps
    for round_ in range(2):
        for n in range(1, 40):  # more distinct lifetimes than it remembers
            ttl = float(n * 100 + round_)
            await swaps.swap_together([Write(f"r{n}", b"1", ttl)], [(f"m{n}", {"f": b"1"}, ttl)])
            await swaps.swap_many([Write(f"s{n}", b"1", ttl)])
        for bad in (-1.0, 0.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="ttl"):
                swaps.swap_together([Write("r", b"1", bad)], [])
            with pytest.raises(ValueError, match="ttl"):
                swaps.swap_together([], [("m", {"f": b"1"}, bad)])
            with pytest.raises(ValueError, match="ttl"):
                swaps.swap_together([], [], (), [("q", {"f": b"1"}, bad)])
            with pytest.raises(ValueError, match="ttl"):
                swaps.swap_many([Write("s", b"1", bad)])
    assert await observed.store.get_many(["r", "s"]) == [None, None]
    assert await observed.store.hgetall_many(["m", "q"]) == [{}, {}]


async def test_a_caller_that_goes_away_leaves_the_others_answered(observed: Observed) -> None:
    swaps = observed.swaps
    gone = asyncio.ensure_future(swaps.swap_together([Write("r1", b"1")], []))
    stays = swaps.swap_together([], [("m", {"f": b"1"}, None)])
    gone.cancel()
    assert await stays == [{}]
    assert await observed.store.get("r1") == b"1"  # its write was sent all the same


async def test_swap_many_calls_of_a_turn_go_as_one_each_answered(observed: Observed) -> None:
    store, swaps = observed.store, observed.swaps
    await store.set("k1", b"old")
    answers = await asyncio.gather(
        swaps.swap_many([Write("k1", b"1"), Write("k2", b"2")]),
        swaps.swap_many([Write("k3", b"3")]),
        swaps.swap_many([Write("k1", b"again")]),  # meets the first: a group after
    )
    assert answers == [[b"old", None], [None], [b"1"]]
    assert observed.swaps_sent("swap_many") == ["ok", "ok"]
    assert await store.get_many(["k1", "k2", "k3"]) == [b"again", b"2", b"3"]


async def test_calls_of_two_kinds_keep_their_order(observed: Observed) -> None:
    swaps = observed.swaps
    answers = await asyncio.gather(
        swaps.swap_many([Write("k", b"1")]),
        swaps.swap_together([], [("m", {"f": b"1"}, None)]),
        swaps.swap_many([Write("k", b"2")]),  # after the other kind: a group of its own
    )
    assert answers == [[None], [{}], [b"1"]]
    assert observed.swaps_sent("swap_many") == ["ok", "ok"]
    assert observed.swaps_sent() == ["ok"]


async def test_order_holds_across_turns(observed: Observed) -> None:
    """A group left for after another is queued before the calls of the next turn."""
    swaps = observed.swaps
    first = swaps.swap_many([Write("k", b"1")])
    second = swaps.swap_many([Write("k", b"2")])  # meets the first: a group after it
    await asyncio.sleep(0)  # the next turn of the loop
    third = swaps.swap_many([Write("k", b"3")])
    assert await asyncio.gather(first, second, third) == [[None], [b"1"], [b"2"]]
    assert await observed.store.get("k") == b"3"


async def test_a_group_waits_for_the_groups_in_flight_it_meets(observed: Observed) -> None:
    """A group sent while earlier ones are not answered yet starts only once those it meets
    are: a map one writes quietly and the other answers, either way round, or a key both
    write; one it does not meet (quiet writes of one map aside) is not held back."""
    store, swaps = observed.store, observed.swaps
    spans: list[tuple[str, str]] = []
    call = store.swap_together

    async def recorded(*args: Any) -> Any:
        name = args[1][0][0] if args[1] else args[3][0][0]  # the first map it writes
        spans.append(("start", name))
        await asyncio.sleep(0.01)  # still in flight when the next turns' groups go
        answer = await call(*args)
        spans.append(("end", name))
        return answer

    store.swap_together = recorded  # type: ignore[method-assign]
    first = swaps.swap_together([], [("a", {"f": b"1"}, None)], also=[("marks", {"a": b"t"}, None)])
    await asyncio.sleep(0)
    unrelated = swaps.swap_together(
        [], [("b", {"f": b"1"}, None)], also=[("marks", {"b": b"t"}, None)]
    )
    await asyncio.sleep(0)
    answers_marks = swaps.swap_together([], [("marks", {"a": b"u"}, None)])
    await asyncio.sleep(0)
    quiet_after = swaps.swap_together(
        [], [("d", {"f": b"1"}, None)], also=[("marks", {"d": b"t"}, None)]
    )
    await asyncio.sleep(0)
    same_map = swaps.swap_together([], [("a", {"f": b"2"}, None)])
    answers = await asyncio.gather(first, unrelated, answers_marks, quiet_after, same_map)
    assert answers == [[{}], [{}], [{"a": b"t"}], [{}], [{"f": b"1"}]]
    assert spans.index(("start", "b")) < spans.index(("end", "a"))  # not held back
    assert spans.index(("start", "marks")) > spans.index(("end", "b"))
    assert spans.index(("start", "d")) > spans.index(("end", "marks"))
    assert spans.index(("start", "a"), 1) > spans.index(("end", "a"))
    assert await store.hgetall("marks") == {"a": b"u", "b": b"t", "d": b"t"}
    assert await store.hgetall("a") == {"f": b"2"}


async def test_a_group_holds_at_most_max_calls(observed: Observed) -> None:
    swaps = observed.swaps
    calls = [swaps.swap_many([Write(f"k{i}", b"v")]) for i in range(MAX_CALLS + 1)]
    assert await asyncio.gather(*calls) == [[None]] * (MAX_CALLS + 1)
    assert observed.swaps_sent("swap_many") == ["ok", "ok"]
