"""The match table on a real SQLite store."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cookiematch.buyer.matchtable import MatchCodec, MatchEntry, MatchKeys, MatchTable
from cookiematch.buyer.model import DAY
from cookiematch.errors import StorageError
from cookiematch.storage import Store

from .conftest import GID, NID, NOW, Clock

UID = bytes(range(16))
OTHER_UID = bytes(range(1, 17))


async def test_record_writes_both_directions(table: MatchTable) -> None:
    entry = await table.record(GID, UID, 1)
    assert entry == MatchEntry(GID, UID, 1, int(NOW))
    assert await table.by_gid(GID) == entry
    assert await table.by_uid(UID) == entry


async def test_rematch_overwrites_and_updates_time(table: MatchTable, clock: Clock) -> None:
    await table.record(GID, UID, 1)
    clock.advance(3 * DAY)
    await table.record(GID, OTHER_UID, 2)
    entry = await table.by_gid(GID)
    assert entry == MatchEntry(GID, OTHER_UID, 2, int(NOW + 3 * DAY))
    assert await table.by_uid(OTHER_UID) == entry


async def test_entries_expire_after_their_ttl(table: MatchTable, clock: Clock) -> None:
    await table.record(GID, UID, 1)
    clock.advance(28 * DAY - 1)
    assert await table.by_gid(GID) is not None
    clock.advance(2)
    assert await table.by_gid(GID) is None
    assert await table.by_uid(UID) is None


class CountingStore:
    """Wraps a store and counts the read calls."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads = 0

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.reads += 1
        return await self.store.get_many(keys)

    async def get(self, key: str) -> bytes | None:
        self.reads += 1
        return await self.store.get(key)


@pytest.mark.parametrize("known", ["gid", "uid", "both", "none"])
async def test_lookup_is_one_store_call(store: Store, clock: Clock, known: str) -> None:
    await MatchTable(store, NID, ttl_seconds=DAY, clock=clock).record(GID, UID, 1)
    counting = CountingStore(store)
    table = MatchTable(counting, NID, ttl_seconds=DAY, clock=clock)  # type: ignore[arg-type]
    gid = GID if known in ("gid", "both") else None
    uid = UID if known in ("uid", "both") else None
    found = await table.lookup(gid, uid)
    assert counting.reads == (0 if known == "none" else 1)
    assert (found.by_gid is not None) == (gid is not None)
    assert (found.by_uid is not None) == (uid is not None)
    assert found.newest == (None if known == "none" else MatchEntry(GID, UID, 1, int(NOW)))


async def test_lookup_of_unknown_ids(table: MatchTable) -> None:
    found = await table.lookup("AAAA", OTHER_UID)
    assert found.by_gid is None and found.by_uid is None and found.newest is None


def test_layout_is_compact() -> None:
    entry = MatchEntry(GID, UID, 1, int(NOW))
    assert len(MatchCodec.pack_by_gid(entry)) == 25
    assert len(MatchCodec.pack_by_uid(entry)) == 9 + len(GID)
    keys = MatchKeys(NID)
    assert keys.by_gid(GID) == f"bm:{NID}:g:{GID}"
    assert keys.by_uid(UID) == f"bm:{NID}:u:AAECAwQFBgcICQoLDA0ODw"


async def test_buyers_sharing_a_store_do_not_see_each_other(store: Store, clock: Clock) -> None:
    await MatchTable(store, "one", ttl_seconds=DAY, clock=clock).record(GID, UID, 1)
    assert await MatchTable(store, "two", ttl_seconds=DAY, clock=clock).by_gid(GID) is None


@pytest.mark.parametrize("value", [b"", b"\x01short", b"\x02" + bytes(24)])
async def test_corrupt_values_are_storage_errors(
    table: MatchTable, store: Store, value: bytes
) -> None:
    await store.set(table.keys.by_gid(GID), value)
    with pytest.raises(StorageError):
        await table.by_gid(GID)
