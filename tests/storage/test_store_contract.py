"""The Store contract: every backend in ``conftest.BACKENDS``, under both durability modes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.storage import Durability, Store
from cookiematch.storage.base import Write

if TYPE_CHECKING:
    from .conftest import FakeClock, MakeStore


async def keys(store: Store, prefix: str, batch: int = 1000) -> list[str]:
    return [key async for key, _ in store.scan(prefix, batch=batch)]


# --- plain values ---------------------------------------------------------------------------


async def test_get_missing_is_none(store: Store) -> None:
    assert await store.get("nope") is None


async def test_set_get_overwrite(store: Store) -> None:
    await store.set("k", b"one")
    assert await store.get("k") == b"one"
    await store.set("k", b"two")
    assert await store.get("k") == b"two"


async def test_values_are_binary_safe(store: Store) -> None:
    value = bytes(range(256)) + b"\x00\x00tail\x00"
    await store.set("bin", value)
    await store.set("empty", b"")
    assert await store.get("bin") == value
    assert await store.get("empty") == b""


async def test_unicode_keys_are_distinct(store: Store) -> None:
    names = ["café", "cafe\u0301", "日本語", "🍪", "a\x00b", "a", " a", "A"]
    for i, key in enumerate(names):
        await store.set(key, str(i).encode())
    assert await store.get_many(names) == [str(i).encode() for i in range(len(names))]


async def test_large_value(store: Store) -> None:
    value = bytes(i % 251 for i in range(100 * 1024))
    await store.set("big", value)
    assert await store.get("big") == value


async def test_get_many_keeps_order_missing_and_duplicates(store: Store) -> None:
    await store.write_many([Write("a", b"1"), Write("b", b"2")])
    assert await store.get_many(["b", "x", "a", "b"]) == [b"2", None, b"1", b"2"]
    assert await store.get_many([]) == []


async def test_get_many_beyond_one_query(store: Store) -> None:
    names = [f"k{i}" for i in range(1200)]
    await store.write_many([Write(k, k.encode()) for k in names[::2]])
    got = await store.get_many(names)
    assert got == [k.encode() if i % 2 == 0 else None for i, k in enumerate(names)]


async def test_write_many_sets_and_deletes(store: Store) -> None:
    await store.set("gone", b"x")
    await store.write_many([Write("a", b"1"), Write("gone", None), Write("b", b"2")])
    assert await store.get_many(["a", "gone", "b"]) == [b"1", None, b"2"]
    await store.write_many([])


async def test_write_many_applies_in_order(store: Store) -> None:
    await store.write_many([Write("k", b"1"), Write("k", None), Write("k", b"3")])
    assert await store.get("k") == b"3"


async def test_delete(store: Store) -> None:
    await store.set("k", b"v")
    assert await store.delete("k") is True
    assert await store.get("k") is None
    assert await store.delete("k") is False


async def test_delete_removes_a_field_map(store: Store) -> None:
    await store.hset("h", {"f": b"1"})
    assert await store.delete("h") is True
    assert await store.hgetall("h") == {}


async def test_bad_arguments(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.set("k", b"v", ttl=0)
    with pytest.raises(ValueError):
        await store.set("k", b"v", ttl=-1)
    with pytest.raises(TypeError):
        await store.set("k", "text")  # type: ignore[arg-type]
    assert await store.get("k") is None


# --- field maps -----------------------------------------------------------------------------


async def test_field_maps(store: Store) -> None:
    assert await store.hgetall("h") == {}
    assert await store.hget("h", "a") is None
    await store.hset("h", {"a": b"1", "b": b"\x00"})
    await store.hset("h", {"b": b"2", "ç": b"3"})
    assert await store.hget("h", "b") == b"2"
    assert await store.hgetall("h") == {"a": b"1", "b": b"2", "ç": b"3"}
    assert await store.hdel("h", ["a", "zz"]) == 1
    assert await store.hdel("h", []) == 0
    assert await store.hgetall("h") == {"b": b"2", "ç": b"3"}
    await store.hset("h", {})


async def test_field_maps_and_plain_values_are_apart(store: Store) -> None:
    await store.hset("h", {"f": b"1"})
    await store.set("p", b"2")
    assert await store.get("h") is None
    assert await store.hgetall("p") == {}
    assert await keys(store, "") == ["p"]


async def test_hset_many_and_hgetall_many(store: Store) -> None:
    await store.hset("a", {"old": b"0", "x": b"old"})
    await store.hset_many(
        [
            ("a", {"x": b"1", "y": b"\x00"}, None),
            ("b", {"z": b"2"}, 60.0),
            ("empty", {}, None),
            ("a", {"y": b"again", "ç": b"3"}, 30.0),  # a key again: applied in order
        ]
    )
    await store.hset_many([])
    assert await store.hgetall_many(["b", "missing", "a", "b", "empty"]) == [
        {"z": b"2"},
        {},
        {"old": b"0", "x": b"1", "y": b"again", "ç": b"3"},
        {"z": b"2"},
        {},
    ]
    assert await store.hgetall_many([]) == []
    assert await store.hgetall("a") == {"old": b"0", "x": b"1", "y": b"again", "ç": b"3"}
    assert await keys(store, "") == []  # field maps, not plain values


async def test_hget_many_answers_what_hget_answers(store: Store, clock: FakeClock) -> None:
    await store.hset("a", {"x": b"1", "y": b"\x00"})
    await store.hset("b", {"z": b"2"})
    await store.hset("b", {"short": b"s"}, ttl=0.2)
    await store.set("plain", b"v")
    await asyncio.sleep(0.3)
    await clock.advance(0.5)  # "short" has expired: read as absent
    pairs = [
        ("b", "z"), ("a", "x"), ("a", "missing"), ("missing", "x"), ("b", "short"),
        ("plain", "x"), ("a", "y"), ("b", "z"),
    ]  # fmt: skip
    expected = [b"2", b"1", None, None, None, None, b"\x00", b"2"]
    assert await store.hget_many(pairs) == expected
    assert [await store.hget(key, field) for key, field in pairs] == expected
    assert await store.hget_many([]) == []
    assert await asyncio.gather(*(store.hget_batched(k, f) for k, f in pairs)) == expected


async def test_hswap_many_answers_what_the_fields_held_before(
    store: Store, clock: FakeClock
) -> None:
    await store.hset("a", {"x": b"old", "keep": b"k", "gone": b"g"})
    await store.hset("a", {"short": b"s"}, ttl=0.2)
    await asyncio.sleep(0.3)
    await clock.advance(0.5)  # "short" has expired: not answered, and overwritten
    held = await store.hswap_many(
        [
            ("a", {"x": b"new", "short": b"again", "y": b""}, None),
            ("b", {"z": b"1"}, 60.0),
            ("empty", {}, None),
        ]
    )
    assert held == [{"x": b"old"}, {}, {}]
    assert await store.hswap_many([("b", {"z": b"2"}, 60.0), ("a", {"y": b"3"}, None)]) == [
        {"z": b"1"},
        {"y": b""},
    ]
    assert await store.hswap_many([]) == []
    assert await store.hgetall_many(["a", "b"]) == [
        {"x": b"new", "keep": b"k", "gone": b"g", "short": b"again", "y": b"3"},
        {"z": b"2"},
    ]
    await clock.advance(100)  # the swapped fields keep their own TTLs
    assert await store.hgetall("b") == {}
    items = [(f"s{i:04d}", {"f": b"%d" % i}, None) for i in range(1500)]  # beyond one batch
    assert await store.hswap_many(items) == [{}] * 1500
    assert (await store.hswap_many(items))[1499] == {"f": b"1499"}


async def test_hswap_many_items_sharing_one_mapping(store: Store, clock: FakeClock) -> None:
    """Items may share one mapping object (the frequency checks give a second's writes one),
    each with its own TTL."""
    shared = {"t": b"1"}
    assert await store.hswap_many(
        [("k", shared, 60.0), ("j", shared, None), ("i", shared, 60.0)]
    ) == [
        {},
        {},
        {},
    ]
    held = await store.hswap_many([("k", shared, 60.0), ("j", {"t": b"2"}, None)])
    assert held == [{"t": b"1"}, {"t": b"1"}]
    await clock.advance(100)
    assert await store.hgetall_many(["k", "j", "i"]) == [{}, {"t": b"2"}, {}]


async def test_hswap_many_default_answers_as_the_backends_own(store: Store) -> None:
    """The base class's read-then-write default, run on this backend, answers the same."""
    await store.hset("a", {"x": b"old", "keep": b"k"})
    items = [("a", {"x": b"new", "y": b"1"}, None), ("b", {"z": b"1"}, 60.0)]
    assert await Store.hswap_many(store, items) == [{"x": b"old"}, {}]
    assert await store.hswap_many([("a", {"y": b"2"}, None)]) == [{"y": b"1"}]
    assert await store.hgetall("a") == {"x": b"new", "keep": b"k", "y": b"2"}


async def test_swap_many_answers_what_the_keys_held_before(store: Store, clock: FakeClock) -> None:
    await store.write_many([Write("a", b"old"), Write("gone", b"g"), Write("short", b"s", 0.2)])
    await asyncio.sleep(0.3)
    await clock.advance(0.5)  # "short" has expired: not answered, and overwritten
    held = await store.swap_many(
        [Write("a", b"new"), Write("short", b"again", 60.0), Write("gone", None), Write("b", b"")]
    )
    assert held == [b"old", None, b"g", None]
    assert await store.swap_many([Write("b", b"2"), Write("a", b"3", 60.0)]) == [b"", b"new"]
    assert await store.swap_many([]) == []
    assert await store.get_many(["a", "short", "gone", "b"]) == [b"3", b"again", None, b"2"]
    await clock.advance(100)  # the swapped keys keep their own TTLs
    assert await store.get_many(["a", "short", "b"]) == [None, None, b"2"]
    writes = [Write(f"s{i:04d}", b"%d" % i) for i in range(1500)]  # beyond one statement
    assert await store.swap_many(writes) == [None] * 1500
    assert (await store.swap_many(writes))[1499] == b"1499"


async def test_swap_many_refuses_bad_input_before_writing(store: Store) -> None:
    for ttl in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            await store.swap_many([Write("p", b"1"), Write("q", b"1", ttl)])
    assert await store.get_many(["p", "q"]) == [None, None]


async def test_swap_many_default_answers_as_the_backends_own(store: Store) -> None:
    """The base class's read-then-write default, run on this backend, answers the same."""
    await store.set("a", b"old")
    assert await Store.swap_many(store, [Write("a", b"new"), Write("b", b"1", 60.0)]) == [
        b"old",
        None,
    ]
    assert await store.swap_many([Write("b", b"2")]) == [b"1"]
    assert await store.get_many(["a", "b"]) == [b"new", b"2"]


async def test_swap_together_answers_what_the_fields_held_before(
    store: Store, clock: FakeClock
) -> None:
    await store.hset("m", {"x": b"old", "keep": b"k"})
    await store.hset("m", {"short": b"s"}, ttl=0.2)
    await store.set("gone", b"g")
    await asyncio.sleep(0.3)
    await clock.advance(0.5)  # "short" has expired: not answered
    held = await store.swap_together(
        [Write("p", b"1", 60.0), Write("gone", None)],
        [("m", {"x": b"new", "short": b"again"}, None), ("n", {"a": b"1"}, 60.0)],
    )
    assert held == [{"x": b"old"}, {}]
    assert await store.swap_together([], [("n", {"a": b"2", "b": b""}, None)]) == [{"a": b"1"}]
    assert await store.swap_together([Write("q", b"2")], []) == []
    assert await store.get_many(["p", "gone", "q"]) == [b"1", None, b"2"]
    assert await store.hgetall_many(["m", "n"]) == [
        {"x": b"new", "keep": b"k", "short": b"again"},
        {"a": b"2", "b": b""},
    ]
    assert await Store.swap_together(store, [], [("n", {"b": b"3"}, None)]) == [{"b": b""}]


async def test_swap_together_reads_maps_after_its_writes(store: Store, clock: FakeClock) -> None:
    """``read_after``: each key's live map once the call's writes are stored, after the
    answers of the field writes (a map it writes itself is read with its write)."""
    await store.hset("wait", {"r1": b"a", "r2": b"b"})
    await store.hset("wait", {"old": b"o"}, ttl=0.2)
    await asyncio.sleep(0.3)
    await clock.advance(0.5)  # "old" has expired: not read
    answer = await store.swap_together(
        [Write("rev", b"1", 60.0)],
        [("m", {"x": b"new"}, None)],
        read_after=["wait", "missing", "m"],
    )
    assert answer == [{}, {"r1": b"a", "r2": b"b"}, {}, {"x": b"new"}]
    assert await store.swap_together([], [], read_after=["m"]) == [{"x": b"new"}]
    assert await Store.swap_together(store, [], [("m", {"x": b"2"}, None)], ["wait"]) == [
        {"x": b"new"},
        {"r1": b"a", "r2": b"b"},
    ]
    assert await store.get("rev") == b"1"


async def test_swap_together_writes_also_without_answering_it(
    store: Store, clock: FakeClock
) -> None:
    """``also``: field writes of the call merged like the others, nothing answered for them
    (the answer is the field writes', then ``read_after``'s, which sees them)."""
    await store.hset("mark", {"old": b"o", "b": b"1"})
    await store.hset("m", {"x": b"was"})
    answer = await store.swap_together(
        [Write("rev", b"1", 60.0)],
        [("m", {"x": b"new"}, None)],
        read_after=["mark"],
        also=[("mark", {"b": b"2", "c": b"3"}, 60.0), ("fresh", {"f": b"v"}, None)],
    )
    assert answer == [{"x": b"was"}, {"old": b"o", "b": b"2", "c": b"3"}]
    assert await store.hgetall_many(["mark", "fresh", "m"]) == [
        {"old": b"o", "b": b"2", "c": b"3"},
        {"f": b"v"},
        {"x": b"new"},
    ]
    assert await store.swap_together([], [], also=[("fresh", {"g": b"w"}, None)]) == []
    assert await Store.swap_together(
        store, [], [("m", {"x": b"3"}, None)], ["fresh"], [("fresh", {"h": b"z"}, None)]
    ) == [{"x": b"new"}, {"f": b"v", "g": b"w", "h": b"z"}]
    assert await store.get("rev") == b"1"


async def test_hset_many_ttl_is_per_item(store: Store, clock: FakeClock) -> None:
    await store.hset_many(
        [("h", {"a": b"1"}, 0.2), ("h", {"b": b"2"}, None), ("h", {"c": b"3"}, 60.0)]
    )
    await store.hset_many([("g", {"a": b"1"}, 0.2), ("g", {"b": b"2"}, 60.0)])
    await asyncio.sleep(0.3)  # the map itself lives as long as its longest-lived field
    await clock.advance(0.5)
    assert await store.hgetall_many(["h", "g"]) == [{"b": b"2", "c": b"3"}, {"b": b"2"}]
    await clock.advance(100)
    assert await store.hgetall_many(["h", "g"]) == [{"b": b"2"}, {}]


async def test_hset_many_refuses_bad_input_before_writing(store: Store) -> None:
    for ttl in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            await store.hset_many([("ok", {"f": b"1"}, None), ("bad", {"f": b"1"}, ttl)])
    assert await store.hgetall_many(["ok", "bad"]) == [{}, {}]


async def test_hset_many_beyond_one_batch(store: Store) -> None:
    items = [(f"m{i:05d}", {"f": str(i).encode(), "g": b"x"}, 60.0 if i % 2 else None)
             for i in range(3000)]  # fmt: skip
    await store.hset_many(items)
    names = [key for key, _, _ in items]
    got = await store.hgetall_many(names[::-1])
    assert got == [{"f": str(i).encode(), "g": b"x"} for i in reversed(range(3000))]
    await store.hdel("m00007", ["g"])
    assert await store.hgetall_many(["m00007"]) == [{"f": b"7"}]


async def test_write_together_plain_keys_and_maps(store: Store, clock: FakeClock) -> None:
    await store.set("gone", b"x")
    await store.hset("m", {"old": b"0", "f": b"old"})
    await store.write_together(
        [Write("k", b"1", 60.0), Write("gone", None), Write("forever", b"\x00")],
        [("m", {"f": b"new"}, 0.2), ("n", {"a": b"2"}, None), ("empty", {}, None)],
    )
    await store.write_together([], [])
    assert await store.get_many(["k", "gone", "forever"]) == [b"1", None, b"\x00"]
    assert await store.hgetall_many(["m", "n", "empty"]) == [
        {"old": b"0", "f": b"new"}, {"a": b"2"}, {},
    ]  # fmt: skip
    await asyncio.sleep(0.3)
    await clock.advance(0.5)
    assert await store.hgetall("m") == {"old": b"0"}
    assert await store.get("k") == b"1"
    await clock.advance(100)
    assert await store.get_many(["k", "forever"]) == [None, b"\x00"]


async def test_write_together_refuses_bad_input_before_writing(store: Store) -> None:
    for ttl in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            await store.write_together([Write("p", b"1")], [("bad", {"f": b"1"}, ttl)])
        with pytest.raises(ValueError):
            await store.write_together([Write("p", b"1", ttl)], [("ok", {"f": b"1"}, None)])
    assert await store.get("p") is None
    assert await store.hgetall_many(["ok", "bad"]) == [{}, {}]


async def test_write_together_concurrently_and_beyond_one_batch(store: Store) -> None:
    async def one(i: int) -> None:
        await store.write_together(
            [Write(f"r{i:04d}", str(i).encode(), 60.0)], [(f"p{i % 7}", {f"f{i}": b"v"}, 60.0)]
        )

    await asyncio.gather(*(one(i) for i in range(300)))
    assert await store.get_many([f"r{i:04d}" for i in range(300)]) == [
        str(i).encode() for i in range(300)
    ]
    maps = await store.hgetall_many([f"p{j}" for j in range(7)])
    assert sorted(f for m in maps for f in m) == sorted(f"f{i}" for i in range(300))
    big = [Write(f"b{i:05d}", b"x") for i in range(3000)]
    await store.write_together(big, [(f"q{i:05d}", {"g": b"y"}, None) for i in range(3000)])
    assert await store.get_many(["b00000", "b02999"]) == [b"x", b"x"]
    assert await store.hgetall_many(["q00000", "q02999"]) == [{"g": b"y"}, {"g": b"y"}]


# --- scan -----------------------------------------------------------------------------------


async def test_scan_prefix_in_key_order_across_batches(store: Store) -> None:
    inside = ["ab", "ab\x00", "ab0", "abc", "abc/d", "ab\uffff", "ab\U0010ffff", "ab\U0010ffffz"]
    outside = ["a", "aa", "ac", "b", "a\U0010ffff", "AB"]
    await store.write_many([Write(k, k.encode("utf-8")) for k in inside + outside])
    for batch in (1, 2, 3, 1000):
        got = [(k, v) async for k, v in store.scan("ab", batch=batch)]
        assert got == [(k, k.encode("utf-8")) for k in sorted(inside)]
    assert await keys(store, "") == sorted(inside + outside)
    assert await keys(store, "abd") == []


async def test_scan_of_many_keys_is_in_key_order_each_once(store: Store) -> None:
    """More keys than one SCAN page on Redis (and over three masters on a cluster): the pages
    are merged into key order, each key given once, maps and other prefixes left out."""
    names = [f"k:{(i * 7919) % 5000:05d}" for i in range(5000)]  # written out of order
    for start in range(0, len(names), 1000):
        await store.write_many([Write(k, k.encode()) for k in names[start : start + 1000]])
    await store.write_many([Write(f"l:{i}", b"x") for i in range(50)])
    await store.hset("k:map", {"f": b"x"})
    got = [k async for k, _ in store.scan("k:", batch=333)]
    assert got == sorted(names)
    pages = [page async for page in store.scan_pages("k:", batch=700)]
    assert [k for page in pages for k, _ in page] == sorted(names)
    assert [len(page) for page in pages] == [700] * 7 + [100]


async def test_a_scan_out_of_order_gives_every_live_key(store: Store, clock: FakeClock) -> None:
    """``in_order=False`` (a count, a copy): every live plain key or map under the prefix with
    its value, in pages of at most ``batch``, whatever their order; expired ones, the other
    kind and other prefixes left out. More than one SCAN page on Redis, three masters on a
    cluster."""
    names = [f"k:{(i * 7919) % 5000:05d}" for i in range(5000)]
    for start in range(0, len(names), 1000):
        await store.write_many([Write(k, k.encode()) for k in names[start : start + 1000]])
    await store.write_many([Write(f"l:{i}", b"x") for i in range(50)])
    await store.set("k:gone", b"x", ttl=1.0)
    maps = [f"k:m{i:03d}" for i in range(300)]
    await store.hset_many([(key, {"f": key.encode()}, None) for key in maps[::2]])
    await store.hset_many([(key, {"f": key.encode()}, 1.0) for key in maps[1::2]])
    await store.hset("k:m000", {"g": b"later"}, ttl=1.0)
    await clock.advance(2)

    pages = [list(page) async for page in store.scan_pages("k:", batch=700, in_order=False)]
    assert all(0 < len(page) <= 700 for page in pages)
    rows = [tuple(row) for page in pages for row in page]
    assert sorted(set(rows)) == [(k, k.encode()) for k in sorted(names)]
    with_ttl = [row async for row in store.scan_ttl("k:", batch=333, in_order=False)]
    assert sorted({key for key, _, _ in with_ttl}) == sorted(names)
    assert all(value == key.encode() and ttl is None for key, value, ttl in with_ttl)
    found = [item async for item in store.scan_maps("k:m", batch=64, in_order=False)]
    assert sorted({key for key, _ in found}) == maps[::2]
    assert all(fields == {"f": (key.encode(), None)} for key, fields in found)
    assert [page async for page in store.scan_pages("k:x", in_order=False)] == []
    with pytest.raises(ValueError):
        await anext(aiter(store.scan_pages("k:", batch=0, in_order=False)))


async def test_scan_pages_are_the_scan_in_pages(store: Store, clock: FakeClock) -> None:
    inside = ["ab", "ab\x00", "ab0", "abc", "abc/d", "ab\uffff", "ab\U0010ffff", "ab\U0010ffffz"]
    outside = ["a", "aa", "ac", "b", "AB"]
    await store.write_many([Write(k, k.encode("utf-8")) for k in inside + outside])
    await store.set("ab-gone", b"x", ttl=1.0)
    await store.hset("ab-map", {"f": b"x"})
    await clock.advance(2)
    expected = [(k, k.encode("utf-8")) for k in sorted(inside)]
    for batch in (1, 3, 8, 1000):
        pages = [list(page) async for page in store.scan_pages("ab", batch=batch)]
        assert all(0 < len(page) <= batch for page in pages)
        assert [tuple(row) for page in pages for row in page] == expected
        # the base class's, for a backend without a query of pages
        default = [page async for page in Store.scan_pages(store, "ab", batch=batch)]
        assert all(0 < len(page) <= batch for page in default)
        assert [tuple(row) for page in default for row in page] == expected
    assert [page async for page in store.scan_pages("abd")] == []
    with pytest.raises(ValueError):
        await anext(aiter(store.scan_pages("ab", batch=0)))


async def test_scan_prefix_ending_in_the_last_code_point(store: Store) -> None:
    top = "\U0010ffff"
    names = ["a" + top, "a" + top + "x", "a" + top + top, "b", "a"]
    await store.write_many([Write(k, b"") for k in names])
    assert await keys(store, "a" + top) == sorted(names[:3])
    assert await keys(store, "a" + top + top) == ["a" + top + top]


async def test_scan_prefix_before_a_surrogate_gap(store: Store) -> None:
    names = ["\ud7ff", "\ud7ffz", "\ue000", "\ud7fe"]
    await store.write_many([Write(k, b"") for k in names])
    assert await keys(store, "\ud7ff") == ["\ud7ff", "\ud7ffz"]


# --- TTL (the store reads the injected clock) -----------------------------------------------


async def test_ttl_expiry(store: Store, clock: FakeClock) -> None:
    await store.set("short", b"1", ttl=1.0)
    await store.set("long", b"2", ttl=5.0)
    await store.set("forever", b"3")
    await clock.advance(0.5)
    assert await store.get_many(["short", "long", "forever"]) == [b"1", b"2", b"3"]
    await clock.advance(0.6)
    assert await store.get("short") is None
    assert await store.get_many(["short", "long", "forever"]) == [None, b"2", b"3"]
    assert await keys(store, "") == ["forever", "long"]
    assert await store.delete("short") is False
    await clock.advance(5)
    assert await keys(store, "") == ["forever"]


async def test_set_without_ttl_clears_ttl(store: Store, clock: FakeClock) -> None:
    await store.set("k", b"1", ttl=1.0)
    await store.set("k", b"2")
    await clock.advance(2)
    assert await store.get("k") == b"2"


async def test_write_many_ttl(store: Store, clock: FakeClock) -> None:
    await store.write_many([Write("a", b"1", ttl=1.0), Write("b", b"2")])
    await clock.advance(1.5)
    assert await store.get_many(["a", "b"]) == [None, b"2"]


async def test_expired_key_can_be_set_again(store: Store, clock: FakeClock) -> None:
    await store.set("k", b"old", ttl=1.0)
    await clock.advance(2)
    await store.set("k", b"new", ttl=1.0)
    assert await store.get("k") == b"new"


async def test_set_if_absent(store: Store, clock: FakeClock) -> None:
    assert await store.set_if_absent("lock", b"first", ttl=2.0) is True
    assert await store.set_if_absent("lock", b"second", ttl=2.0) is False
    assert await store.get("lock") == b"first"
    await clock.advance(2.5)  # expired on the store's clock: free again
    assert await store.set_if_absent("lock", b"third", ttl=2.0) is True
    assert await store.get("lock") == b"third"
    assert await store.delete("lock") is True  # deleted: free again
    assert await store.set_if_absent("lock", b"\x00bin\xff") is True
    await store.set("kept", b"x", ttl=1.0)
    await store.set("kept", b"x")  # a value without TTL is never replaced
    await clock.advance(1e6)
    assert await store.set_if_absent("kept", b"y", ttl=1.0) is False
    assert await store.get_many(["kept", "lock"]) == [b"x", b"\x00bin\xff"]
    with pytest.raises(ValueError):
        await store.set_if_absent("other", b"v", ttl=0)
    assert await store.get("other") is None


async def test_set_if_absent_has_one_winner_across_store_objects(
    store: Store, make_store: MakeStore
) -> None:
    """Several store objects (as several workers) race for the same key: exactly one wins."""
    contenders = [store, *(make_store(d) for d in (Durability.ACK, Durability.ASYNC) * 2)]
    for round_ in range(5):
        key = f"lease{round_}"
        won = await asyncio.gather(
            *(s.set_if_absent(key, str(i).encode(), ttl=60) for i, s in enumerate(contenders))
        )
        assert won.count(True) == 1, won
        assert await store.get(key) == str(won.index(True)).encode()


async def test_field_ttl_is_per_field(store: Store, clock: FakeClock) -> None:
    await store.hset("h", {"a": b"1", "b": b"2"}, ttl=1.0)
    await store.hset("h", {"c": b"3"})
    await store.hset("h", {"d": b"4"}, ttl=5.0)
    await clock.advance(1.5)
    assert await store.hget("h", "a") is None
    assert await store.hgetall("h") == {"c": b"3", "d": b"4"}
    assert await store.hdel("h", ["a", "b", "c"]) == 1
    await store.hset("h", {"a": b"again"})  # re-set without TTL: lives on
    await clock.advance(10)
    assert await store.hgetall("h") == {"a": b"again"}
    assert await store.delete("h") is True
    await store.hset("gone", {"x": b"1"}, ttl=1.0)
    await clock.advance(2)
    assert await store.delete("gone") is False


async def test_many_fields_with_their_own_ttls(store: Store, clock: FakeClock) -> None:
    start = clock.now
    items = [("h", {f"t{i:02d}": b"%d" % i}, float(i)) for i in range(1, 21)]
    await store.hset_many([*items, ("h", {"forever": b"f"}, None)])
    await store.hset("h", {"t05": b"again"}, ttl=30)
    for elapsed in (0.5, 3.5, 9.5, 19.5, 20.5):
        clock.now = start + elapsed
        live = {f"t{i:02d}" for i in range(1, 21) if i > elapsed} | {"forever", "t05"}
        assert set(await store.hgetall("h")) == live
        assert await store.hget("h", "t20") == (b"20" if elapsed < 20 else None)
        [(_, fields)] = [item async for item in store.scan_maps("h")]
        assert set(fields) == live
        assert fields["forever"] == (b"f", None)
        assert fields["t05"] == (b"again", pytest.approx(30 - elapsed, abs=0.01))


async def test_a_key_written_several_times_in_one_hset_many(store: Store, clock: FakeClock) -> None:
    await store.hset("k", {"a": b"0", "keep": b"k"}, ttl=5)
    await store.hset_many(
        [
            ("k", {"a": b"1", "b": b"1"}, 100.0),
            ("other", {"x": b"1"}, None),
            ("k", {"a": b"2"}, 2.0),  # later wins, with its own TTL
            ("k", {"b": b"3"}, None),
        ]
    )
    assert await store.hgetall_many(["k", "other"]) == [
        {"a": b"2", "b": b"3", "keep": b"k"},
        {"x": b"1"},
    ]
    await clock.advance(3)
    assert await store.hgetall("k") == {"b": b"3", "keep": b"k"}
    await clock.advance(3)
    assert await store.hgetall("k") == {"b": b"3"}
    assert [item async for item in store.scan_maps("k")] == [("k", {"b": (b"3", None)})]


async def test_hdel_of_the_last_live_field(store: Store, clock: FakeClock) -> None:
    await store.hset("h", {"a": b"1"}, ttl=1)
    await store.hset("h", {"b": b"2"}, ttl=10)
    await clock.advance(2)
    assert await store.hdel("h", ["a", "b"]) == 1
    assert await store.hgetall("h") == {}
    assert await store.hget("h", "a") is None
    assert [key async for key, _ in store.scan_maps("h")] == []
    assert await store.delete("h") is False
    await store.hset("h", {"c": b"3"})
    assert await store.hgetall("h") == {"c": b"3"}  # nothing old comes back


async def test_delete_a_map_whose_first_field_expired(store: Store, clock: FakeClock) -> None:
    await store.hset("d", {"a": b"1"}, ttl=1)
    await store.hset("d", {"b": b"2"}, ttl=10)
    await clock.advance(2)
    assert await store.delete("d") is True
    assert await store.delete("d") is False
    assert await store.hgetall("d") == {}


async def test_scan_maps_skips_maps_with_no_live_field(store: Store, clock: FakeClock) -> None:
    for i in range(10):
        await store.hset(f"s:{i}", {"x": b"%d" % i}, ttl=1.0 if i % 3 else None)
    await store.hset("s:1", {"y": b"1"}, ttl=1.0)
    await store.hset("s:4", {"y": b"4"}, ttl=10.0)
    await clock.advance(2)
    for batch in (1, 2, 3, 100):
        got = [item async for item in store.scan_maps("s:", batch=batch)]
        assert [key for key, _ in got] == ["s:0", "s:3", "s:4", "s:6", "s:9"]
        assert got[2][1] == {"y": (b"4", pytest.approx(8.0, abs=0.01))}


# --- concurrency, durability modes and lifecycle --------------------------------------------


async def test_many_concurrent_writers(store: Store) -> None:
    names = [f"user:{i:04d}" for i in range(1000)]
    await asyncio.gather(*(store.set(k, k.encode() * 3) for k in names))
    assert await store.get_many(names) == [k.encode() * 3 for k in names]
    assert await keys(store, "user:", batch=128) == names


async def test_concurrent_mixed_ops(store: Store) -> None:
    async def worker(i: int) -> None:
        await store.set(f"k{i}", b"v")
        await store.hset(f"h{i % 7}", {f"f{i}": b"x"})
        assert await store.get(f"k{i}") == b"v"
        if i % 2:
            assert await store.delete(f"k{i}") is True

    await asyncio.gather(*(worker(i) for i in range(300)))
    assert await keys(store, "k") == sorted(f"k{i}" for i in range(0, 300, 2))
    assert sum([len(await store.hgetall(f"h{j}")) for j in range(7)]) == 300


async def test_reads_see_own_writes(store: Store) -> None:
    for i in range(200):
        await store.set("counter", str(i).encode())
        assert await store.get("counter") == str(i).encode()
        await store.hset("h", {"n": str(i).encode()})
        assert await store.hget("h", "n") == str(i).encode()


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_close_flushes_pending_writes(make_store: MakeStore) -> None:
    for durability in Durability:
        store = make_store(durability)
        await asyncio.gather(*(store.set(f"{durability.value}{i}", b"v") for i in range(500)))
        await store.hset("h", {durability.value: b"1"})
        await store.close()
    reopened = make_store()
    for durability in Durability:
        assert len(await keys(reopened, durability.value)) == 500
    assert await reopened.hgetall("h") == {"ack": b"1", "async": b"1"}


async def test_operations_after_close_raise(store: Store) -> None:
    await store.set("k", b"v")
    await store.close()
    await store.close()  # closing twice is harmless
    calls = [
        store.get("k"),
        store.get_many(["k"]),
        store.set("k", b"v"),
        store.write_many([Write("k", b"v")]),
        store.delete("k"),
        store.set_if_absent("k", b"v"),
        store.hget("h", "f"),
        store.hgetall("h"),
        store.hset("h", {"f": b"v"}),
        store.hdel("h", ["f"]),
        store.ping(),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable):
            await call
    with pytest.raises(StorageError):
        await keys(store, "")


async def test_concurrent_close_waits_for_the_flush(make_store: MakeStore) -> None:
    store = make_store(Durability.ASYNC)
    for i in range(2000):
        await store.set(f"k{i}", b"v")
    await asyncio.gather(store.close(), store.close())
    assert len(await keys(make_store(), "k")) == 2000


# --- enumeration with expiries (store copy), start, info -------------------------------------


async def test_scan_ttl_reports_remaining_lifetime(store: Store, clock: FakeClock) -> None:
    await store.set("t:short", b"1", ttl=10.0)
    await store.set("t:forever", b"2")
    await store.set("t:gone", b"3", ttl=1.0)
    await store.hset("t:map", {"f": b"x"})
    await clock.advance(4)
    got = [item async for item in store.scan_ttl("t:", batch=1)]
    assert [(k, v) for k, v, _ in got] == [("t:forever", b"2"), ("t:short", b"1")]
    assert got[0][2] is None
    assert got[1][2] == pytest.approx(6.0, abs=0.01)


async def test_scan_maps_with_field_ttls(store: Store, clock: FakeClock) -> None:
    await store.hset("m:b", {"x": b"1", "y": b"2"}, ttl=10.0)
    await store.hset("m:b", {"z": b"3"})
    await store.hset("m:a", {"x": b"\x00"})
    await store.hset("m:expired", {"x": b"1"}, ttl=1.0)
    await store.hset("other", {"x": b"1"})
    await store.set("m:plain", b"p")
    await clock.advance(2)
    for batch in (1, 2, 100):
        got = [item async for item in store.scan_maps("m:", batch=batch)]
        assert [key for key, _ in got] == ["m:a", "m:b"]
        assert got[0][1] == {"x": (b"\x00", None)}
        fields = got[1][1]
        assert sorted(fields) == ["x", "y", "z"]
        assert fields["z"] == (b"3", None)
        assert fields["x"][0] == b"1"
        assert fields["x"][1] == pytest.approx(8.0, abs=0.01)


async def test_entries_of_one_key_with_lifetimes(store: Store, clock: FakeClock) -> None:
    await store.set("e:short", b"1", ttl=10.0)
    await store.set("e:forever", b"2")
    await store.set("e:gone", b"3", ttl=1.0)
    await store.hset("e:map", {"x": b"1"}, ttl=10.0)
    await store.hset("e:map", {"y": b"2"})
    await store.hset("e:map", {"z": b"3"}, ttl=1.0)
    await clock.advance(4)
    short = await store.get_entry("e:short")
    assert short is not None and short[0] == b"1"
    assert short[1] == pytest.approx(6.0, abs=0.01)
    assert await store.get_entry("e:forever") == (b"2", None)
    assert await store.get_entry("e:gone") is None
    assert await store.get_entry("e:missing") is None
    fields = await store.hgetall_entries("e:map")
    assert sorted(fields) == ["x", "y"]
    assert fields["y"] == (b"2", None)
    assert fields["x"][1] == pytest.approx(6.0, abs=0.01)
    assert await store.hgetall_entries("e:missing") == {}
    assert await store.get_entry("e:map") is None  # a map is not a plain value


async def test_scan_maps_many(store: Store) -> None:
    for i in range(250):
        await store.hset(f"h:{i:03d}", {"n": str(i).encode()})
    got = [key async for key, _ in store.scan_maps("h:", batch=64)]
    assert got == [f"h:{i:03d}" for i in range(250)]


async def test_start_and_info(store: Store) -> None:
    await store.start()
    info = await store.info()
    assert info["backend"]


async def test_bucketed_entries(store: Store, clock: FakeClock) -> None:
    from cookiematch.storage.bucketed import Buckets

    table = Buckets.for_entries("mt", 500)
    assert table.buckets == 8
    ids = [bytes([i, 255 - i]) * 8 for i in range(200)]
    for i, entry_id in enumerate(ids):
        await table.set(store, entry_id, b"uid%d" % i, ttl=10 if i % 2 else None)
    assert await table.get_many(store, ids) == [b"uid%d" % i for i in range(200)]
    assert await table.delete(store, ids[0]) is True
    assert await table.delete(store, ids[0]) is False
    await clock.advance(11)
    got = await table.get_many(store, ids)
    assert got == [None] + [None if i % 2 else b"uid%d" % i for i in range(1, 200)]
    assert len([key async for key, _ in store.scan_maps("mt:")]) == 8
