"""An empty store of every backend for tests above the storage layer: SQLite on disk, one real
Redis and one real 3-master Redis Cluster shared by the session (flushed for each test).

A test module imports the fixtures it uses (``from support.stores import backend_store,
shared_cluster, shared_redis``); ``empty_store_url`` is for a fixture that opens the store
its own way (with a clock, say)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cookiematch.storage import Store, connect_store
from storage.redis_servers import RedisClusterProcesses, RedisServer, require_redis

BACKENDS = ("sqlite", "redis", "cluster")
NO_FAILOVER_TIMEOUT_MS = 30_000
"""The shared cluster's node timeout: it has no replicas to fail over to, so a node stalled
by a loaded machine must not be marked failing (which marks the whole cluster down)."""


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_redis()
    server = RedisServer(tmp_path_factory.mktemp("shared-redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    require_redis()
    directory = tmp_path_factory.mktemp("shared-cluster")
    cluster = RedisClusterProcesses(directory, replicas=0, node_timeout_ms=NO_FAILOVER_TIMEOUT_MS)
    yield cluster
    cluster.stop()


def empty_store_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """The URL of an empty store of ``backend`` (the shared servers flushed)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("shared_redis")
        with server.client() as client:
            client.flushall()
        return server.url
    cluster: RedisClusterProcesses = request.getfixturevalue("shared_cluster")
    cluster.flushall()
    return cluster.url


@pytest.fixture(params=BACKENDS)
async def backend_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An empty, started store of each backend."""
    store = await connect_store(empty_store_url(request, request.param, tmp_path))
    yield store
    await store.close()
