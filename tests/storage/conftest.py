"""Store fixtures: the contract suite runs once per backend listed in ``BACKENDS``.

A backend is a fixture named ``<backend>_url`` returning the URL of an empty store (starting a
real server if it needs one). To add one, define its ``<backend>_url`` fixture here and
append its name to ``BACKENDS``; the tests do not change. The Redis servers (one standalone, one
3-master cluster with a replica each) are started once per session and flushed for each test.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from cookiematch.storage import Durability, Store, open_store

from .redis_servers import RedisClusterProcesses, RedisServer, require_redis
from support.stores import shared_redis  # noqa: F401 (the fixture, by name)

BACKENDS = ["sqlite", "redis", "cluster"]

MakeStore = Callable[..., Store]


class FakeClock:
    """Wall-clock seconds that move only when a test advances them."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db"


@pytest.fixture(scope="session")
def redis_server(shared_redis: RedisServer) -> RedisServer:  # noqa: F811 (the fixture)
    """The session's redis-server (``support/stores.py``), flushed by ``redis_url``."""
    return shared_redis


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    require_redis()
    cluster = RedisClusterProcesses(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterProcesses) -> str:
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_store(store_url: str, clock: FakeClock) -> AsyncIterator[MakeStore]:
    """Open stores on the backend's URL (closed at teardown)."""
    opened: list[Store] = []

    def make(durability: Durability = Durability.ACK) -> Store:
        store = open_store(store_url, durability=durability, clock=clock)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture(params=list(Durability), ids=lambda d: d.value)
async def store(request: pytest.FixtureRequest, make_store: MakeStore) -> Store:
    """A store under each durability mode: the contract holds under both."""
    return make_store(request.param)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own (to kill and start again)."""
    require_redis()
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()
