"""The WAL's syncer (``storage/sqlite_sync.py``) on real files: settles in order, after an
fsync, fails what it cannot make durable, syncs the file it holds, never another by its name."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.storage.sqlite_batch import Result
from cookiematch.storage.sqlite_sync import WalSyncer


def batch(loop: asyncio.AbstractEventLoop, *outcomes: tuple[bool, Any]) -> list[Result]:
    return [(loop.create_future(), ok, value) for ok, value in outcomes]


async def settled(results: list[Result]) -> list[Any]:
    """Each result's value, or its exception."""
    answers = await asyncio.gather(*(fut for fut, _, _ in results), return_exceptions=True)
    return list(answers)


async def through(syncer: WalSyncer, *outcomes: tuple[bool, Any]) -> list[Any]:
    """A batch of ``outcomes`` given to ``syncer``, as its futures are settled."""
    results = batch(asyncio.get_running_loop(), *outcomes)
    syncer.settle_synced(results)
    return await settled(results)


@pytest.fixture
def wal(tmp_path: Path) -> Path:
    path = tmp_path / "store.db-wal"
    path.write_bytes(b"frames")
    return path


async def test_batches_are_settled_in_order_once_synced(wal: Path) -> None:
    loop = asyncio.get_running_loop()
    syncer = WalSyncer(str(wal))
    try:
        batches = [batch(loop, (True, i), (True, -i)) for i in range(1, 6)]
        order: list[int] = []
        for results in batches:
            for fut, _, _ in results:
                fut.add_done_callback(lambda f: order.append(f.result()))
            syncer.settle_synced(results)
        assert [await settled(results) for results in batches] == [[i, -i] for i in range(1, 6)]
        assert order == [v for i in range(1, 6) for v in (i, -i)]
        assert 1 <= syncer.syncs <= 5  # batches queued during a sync share the next one
    finally:
        syncer.stop()


async def test_stop_syncs_and_settles_what_is_queued(wal: Path) -> None:
    syncer = WalSyncer(str(wal))
    results = batch(asyncio.get_running_loop(), (True, "a"), (True, "b"))
    syncer.settle_synced(results)
    syncer.stop()
    assert not syncer.alive
    assert await settled(results) == ["a", "b"]
    assert syncer.syncs == 1


async def test_a_wal_that_cannot_be_synced_fails_its_writes_and_every_later_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a failed fsync a later one that succeeds would not prove the earlier commits on
    disk: every later write fails too (StoreUnavailable), logged once."""
    wal = tmp_path / "store.db-wal"
    syncer = WalSyncer(str(wal))  # no such file yet: the fsync cannot be made
    failed = StorageError("the write failed on its own")
    try:
        with caplog.at_level(logging.ERROR, logger="cookiematch.storage.sqlite"):
            answers = await through(syncer, (True, "stored"), (False, failed))
            assert isinstance(answers[0], StoreUnavailable)
            assert "not known to be on disk" in str(answers[0])
            assert answers[1] is failed
            assert await through(syncer, (False, failed)) == [failed]
            assert syncer.alive is False and syncer.failure is not None
            wal.write_bytes(b"frames")  # syncable now: it changes nothing
            (later,) = await through(syncer, (True, "later"))
            assert isinstance(later, StoreUnavailable)
        assert syncer.syncs == 0
        assert caplog.text.count("cannot sync the WAL") == 1
    finally:
        syncer.stop()


async def test_a_wal_deleted_under_the_store_is_not_synced_by_its_name(wal: Path) -> None:
    """The file synced is the one held open since the first fsync: a WAL deleted under the
    store (SQLite writes on to the file it holds, and loses it at its close) fails the writes,
    even where a new file of the same name could be synced."""
    syncer = WalSyncer(str(wal))
    try:
        assert await through(syncer, (True, 1)) == [1]
        wal.unlink()
        wal.write_bytes(b"anew")  # another file under the same name
        (answer,) = await through(syncer, (True, 2))
        assert isinstance(answer, StoreUnavailable)
        assert "deleted under the store" in str(answer)
        assert syncer.syncs == 1
    finally:
        syncer.stop()
