"""Where change marks go (``dmp/change_marks.py``): the map of the moment's slice of its
minute, so the writes of one moment share a map; a write of many browsers fills that map and
the next ones, ``PER_MAP`` at a time; a reader finds them all."""

from __future__ import annotations

from cookiematch.dmp import keys
from cookiematch.dmp.change_marks import (
    MINUTE,
    PER_MAP,
    SHARDS,
    changed_between,
    mark_writes,
)
from cookiematch.storage import Store

MINUTE_START = 29_000_000 * MINUTE


def test_marks_of_one_moment_share_the_map_of_its_slice() -> None:
    now = MINUTE_START + 30.0
    slice_ = int(30.0 * SHARDS / MINUTE)
    key = keys.change_mark_key(int(now // MINUTE), slice_)
    assert [k for k, _, _ in mark_writes(["a"], now)] == [key]
    assert [k for k, _, _ in mark_writes(["b"], now + 0.001)] == [key]
    assert mark_writes(["c"], now + 0.01)[0][0] != key  # a later slice
    assert mark_writes(["d"], MINUTE_START)[0][0] == keys.change_mark_key(29_000_000, 0)
    last = mark_writes(["e"], MINUTE_START + MINUTE - 1e-6)[0][0]
    assert last == keys.change_mark_key(29_000_000, SHARDS - 1)


def test_a_write_of_many_browsers_fills_consecutive_maps() -> None:
    now = MINUTE_START + MINUTE - 1e-6  # the minute's last slice: the next maps wrap around
    uids = [f"u{i}" for i in range(2 * PER_MAP + 1)]
    writes = mark_writes(uids, now)
    minute = int(now // MINUTE)
    assert [key for key, _, _ in writes] == [
        keys.change_mark_key(minute, shard) for shard in (SHARDS - 1, 0, 1)
    ]
    assert [len(fields) for _, fields, _ in writes] == [PER_MAP, PER_MAP, 1]
    assert {name for _, fields, _ in writes for name in fields} == set(uids)


async def test_a_reader_finds_the_marks_of_every_slice(store: Store) -> None:
    start = MINUTE_START
    uids = {f"u{i}": start + i * 0.7 for i in range(80)}
    for uid, at in uids.items():
        await store.hset_many(mark_writes([uid], at))
    await store.hset_many(mark_writes([f"bulk{i}" for i in range(150)], start + 5))
    found = await changed_between(store, start, start + 59)
    assert found == set(uids) | {f"bulk{i}" for i in range(150)}
