"""Every role's server lifecycle (``roots/server.py``): what a start builds, a stop or a failed
start releases."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from cookiematch.config import load_config
from cookiematch.errors import StoreUnavailable
from cookiematch.roots.server import RoleServer
from cookiematch.storage import Store
from cookiematch.storage.guard import MAX_BACKLOG
from cookiematch.web.http import Headers, Request


class Probe(Collector):
    def collect(self):  # type: ignore[no-untyped-def]
        yield CounterMetricFamily("cookiematch_test_probe", "a probe", value=1)


class Sample(RoleServer):
    """Starts a task and a collector, then fails when told to."""

    fail = False

    async def build(self, store: Store) -> None:
        self.built_on = store
        self.collect(Probe())
        self.run(asyncio.Event().wait())
        if self.fail:
            raise RuntimeError("build failed")


def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.toml"
    path.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n')
    return load_config(path, environ={})


def exposed(name: bytes) -> bool:
    return name in generate_latest(REGISTRY)


async def test_a_start_builds_and_a_stop_releases_everything(tmp_path: Path) -> None:
    server = Sample(config(tmp_path))
    await server.app.startup()
    task = server.tasks[0]
    assert server.store is not None and server.store.inner is server.built_on
    assert exposed(b"cookiematch_test_probe") and exposed(b"cookiematch_privacy_decisions")
    await server.app.shutdown()
    assert task.cancelled() and server.tasks == []
    assert not exposed(b"cookiematch_test_probe")
    with pytest.raises(StoreUnavailable):  # closed, pending writes flushed
        await server.built_on.get("k")


async def test_a_failed_start_releases_what_it_started_and_closes_the_store(
    tmp_path: Path,
) -> None:
    server = Sample(config(tmp_path))
    server.fail = True
    with pytest.raises(RuntimeError, match="build failed"):
        await server.app.startup()
    assert server.store is None and server.tasks == []
    assert not exposed(b"cookiematch_test_probe")
    with pytest.raises(StoreUnavailable):
        await server.built_on.get("k")
    again = Sample(config(tmp_path))  # nothing left registered: a new worker starts cleanly
    await again.app.startup()
    await again.app.shutdown()


READYZ = Request("GET", "/readyz", "", Headers(), "http", "127.0.0.1")


async def test_readyz_fails_while_the_queue_of_writes_is_over_its_bound(tmp_path: Path) -> None:
    """``async`` writes queued behind a write lock held elsewhere: at the guard's bound the
    worker is not ready, and the next write is refused at once (counted lost)."""
    path = tmp_path / "c.toml"
    path.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\ndurability = "async"\n')
    server = Sample(load_config(path, environ={}))
    await server.app.startup()
    ready = await server._readyz(READYZ)
    assert ready.status == 200
    lock = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        store, written = server.requests, 0
        while server.store is not None and not server.store.over_backlog:
            await store.set(f"k{written}", b"v")  # the writer holds a first batch
            written += 1
            assert written < 2 * MAX_BACKLOG
        with pytest.raises(StoreUnavailable, match="queued writes"):
            await store.set("one more", b"v")
        assert store.lost == 1
        assert (await server._readyz(READYZ)).status == 503
    finally:
        lock.rollback()
        lock.close()
    await server.app.shutdown()
