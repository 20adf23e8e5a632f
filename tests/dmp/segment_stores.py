"""Stores for the segment and export tests: SQLite, and a real 3-master Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cookiematch.storage import Store, connect_store
from storage.redis_servers import RedisClusterProcesses, require_redis


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
