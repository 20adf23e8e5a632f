"""Stores for the segment, export and erasure tests: SQLite, a real Redis and a real 3-master
Redis Cluster."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cookiematch.storage import Store, connect_store
from storage.redis_servers import RedisClusterProcesses, RedisServer, require_redis

from .helpers import FakeClock


@pytest.fixture(scope="session")
def segment_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    require_redis()
    cluster = RedisClusterProcesses(tmp_path_factory.mktemp("segcluster"), replicas=0)
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "cluster"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An empty store of each kind the segments must work on unchanged."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/segments.db"
    else:
        cluster: RedisClusterProcesses = request.getfixturevalue("segment_cluster")
        cluster.flushall()
        url = cluster.url
    store = await connect_store(url)
    yield store
    await store.close()


@pytest.fixture(scope="session")
def segment_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_redis()
    server = RedisServer(tmp_path_factory.mktemp("segredis"))
    yield server
    server.stop()


@pytest.fixture
def wall_clock() -> FakeClock:
    """A clock the test sets by hand, starting now: Redis also expires fields on its own
    clock, so a store's clock must not start in the past."""
    return FakeClock(float(int(time.time())))


@pytest.fixture(params=["sqlite", "redis", "cluster"])
async def clocked_store(
    request: pytest.FixtureRequest, tmp_path: Path, wall_clock: FakeClock
) -> AsyncIterator[Store]:
    """An empty store of each kind, expiring keys on ``wall_clock``."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/dmp.db"
    elif request.param == "redis":
        server: RedisServer = request.getfixturevalue("segment_redis")
        with server.client() as client:
            client.flushall()
        url = server.url
    else:
        cluster: RedisClusterProcesses = request.getfixturevalue("segment_cluster")
        cluster.flushall()
        url = cluster.url
    store = await connect_store(url, clock=wall_clock)
    yield store
    await store.close()
