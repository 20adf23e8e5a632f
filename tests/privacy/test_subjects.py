"""Reading and erasing the keys a role holds about one subject, on a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cookiematch.privacy.subjects import HeldKey, erase_held, read_held
from cookiematch.storage import Store, open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'subjects.db'}")
    yield store
    await store.close()


async def test_read_and_erase_what_is_held(store: Store) -> None:
    await store.set("hm:{a}:1", b"data", ttl=3600)
    await store.hset("ul:{a}", {"7": b"1700000000"}, ttl=86400)
    await store.hset("ul:{a}", {"8": b"\xff"})
    await store.set("hm:{b}:1", b"other browser")
    held = [
        HeldKey("hosted_match", "hm:{a}:1"),
        HeldKey("hosted_match", "hm:{a}:2"),
        HeldKey("user_list", "ul:{a}", is_map=True, render=lambda raw: len(raw)),
    ]
    records = await read_held(store, held)
    assert [(r.kind, r.field, r.value) for r in records] == [
        ("hosted_match", None, "data"),
        ("user_list", "7", 10),
        ("user_list", "8", 1),
    ]
    assert records[0].expires_in_seconds == pytest.approx(3600, abs=5)
    assert records[2].expires_in_seconds is None
    assert await erase_held(store, held) == {"hosted_match": 1, "user_list": 1}
    assert await read_held(store, held) == []
    assert await erase_held(store, held) == {"hosted_match": 0, "user_list": 0}
    assert await store.get("hm:{b}:1") == b"other browser"
