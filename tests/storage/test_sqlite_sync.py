"""The WAL's syncer (``storage/sqlite_sync.py``) on real files: settles in order, after an
fsync, fails what it cannot make durable, follows a file made anew."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from cookiematch.errors import StorageError
from cookiematch.storage.sqlite_batch import Result
from cookiematch.storage.sqlite_sync import WalSyncer


def batch(loop: asyncio.AbstractEventLoop, *outcomes: tuple[bool, Any]) -> list[Result]:
    return [(loop.create_future(), ok, value) for ok, value in outcomes]


async def settled(results: list[Result]) -> list[Any]:
    """Each result's value, or its exception."""
    answers = await asyncio.gather(*(fut for fut, _, _ in results), return_exceptions=True)
    return list(answers)


async def test_batches_are_settled_in_order_once_synced(tmp_path: Path) -> None:
    wal = tmp_path / "store.db-wal"
    wal.write_bytes(b"frames")
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


async def test_stop_syncs_and_settles_what_is_queued(tmp_path: Path) -> None:
    wal = tmp_path / "store.db-wal"
    wal.write_bytes(b"frames")
    loop = asyncio.get_running_loop()
    syncer = WalSyncer(str(wal))
    results = batch(loop, (True, "a"), (True, "b"))
    syncer.settle_synced(results)
    syncer.stop()
    assert not syncer.alive
    assert await settled(results) == ["a", "b"]
    assert syncer.syncs == 1


async def test_a_wal_that_cannot_be_synced_fails_the_successes_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    syncer = WalSyncer(str(tmp_path / "missing-wal"))
    failed = StorageError("the write failed on its own")
    try:
        results = batch(loop, (True, "stored"), (False, failed))
        with caplog.at_level(logging.ERROR, logger="cookiematch.storage.sqlite"):
            syncer.settle_synced(results)
            answers = await settled(results)
        assert isinstance(answers[0], StorageError)
        assert "not known to be on disk" in str(answers[0])
        assert answers[1] is failed
        assert "cannot sync the WAL" in caplog.text
        errors_only = batch(loop, (False, failed))
        syncer.settle_synced(errors_only)
        assert await settled(errors_only) == [failed]
        assert syncer.syncs == 0  # nothing to make durable: no fsync tried
    finally:
        syncer.stop()


async def test_a_wal_deleted_and_made_anew_is_opened_again(tmp_path: Path) -> None:
    wal = tmp_path / "store.db-wal"
    wal.write_bytes(b"first")
    loop = asyncio.get_running_loop()
    syncer = WalSyncer(str(wal))
    try:
        first = batch(loop, (True, 1))
        syncer.settle_synced(first)
        assert await settled(first) == [1]
        wal.unlink()
        wal.write_bytes(b"second")  # a new file under the same name
        second = batch(loop, (True, 2))
        syncer.settle_synced(second)
        assert await settled(second) == [2]
        assert syncer._fd is not None
        assert os.fstat(syncer._fd).st_ino == wal.stat().st_ino
    finally:
        syncer.stop()
