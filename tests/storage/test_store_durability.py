"""Acknowledged writes survive kill -9 (Durability.ACK), checked with a real child process.

A kill -9 loses what the process held in memory, not what the kernel holds; this test proves
that a write is acknowledged only after its commit. Surviving power loss additionally relies on
the fsync of the WAL after each commit, before the write is acknowledged
(``storage/sqlite_sync.py``; that a write waits for it: ``test_sqlite_store.py``), which a test
cannot cut the power to.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from cookiematch.storage import Durability, open_store

from .durability_child import value_of

CHILD = Path(__file__).with_name("durability_child.py")


def run_and_kill(url: str, durability: Durability, *, min_keys: int) -> list[str]:
    """Run the child until it printed ``min_keys`` keys (and a bit more), kill -9 it."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), url, durability.value],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acked: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while len(acked) < min_keys and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked.append(line.rstrip("\n"))
        os.kill(child.pid, signal.SIGKILL)  # mid-flight: writes are queued and in commit
        acked += [line.rstrip("\n") for line in child.stdout]  # printed before the kill
        _, stderr = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, stderr
    assert len(acked) >= min_keys, stderr
    return [key for key in acked if key]  # the last line may be cut by the kill


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    for _ in range(3):  # kill at three different moments, reopening each time
        acked = run_and_kill(url, Durability.ACK, min_keys=5000)
        store = open_store(url)
        values = await store.get_many(acked)
        await store.close()
        lost = [key for key, value in zip(acked, values, strict=True) if value is None]
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged keys lost: {lost[:5]}"
        assert values == [value_of(key) for key in acked]


async def test_async_mode_reopens_intact_after_kill_9(tmp_path: Path) -> None:
    """ASYNC makes no durability promise: only that the file is intact and values correct."""
    url = f"sqlite:///{tmp_path}/store.db"
    run_and_kill(url, Durability.ASYNC, min_keys=5000)
    store = open_store(url)
    found = [(k, v) async for k, v in store.scan("w")]
    await store.close()
    assert found
    assert all(value == value_of(key) for key, value in found)
    with closing(sqlite3.connect(tmp_path / "store.db")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
