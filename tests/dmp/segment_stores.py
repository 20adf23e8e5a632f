"""Stores for the segment, export and erasure tests: SQLite, a real Redis and a real 3-master
Redis Cluster (the session's shared servers, ``support/stores.py``); a test module imports
``shared_redis`` and ``shared_cluster`` with the fixture it uses."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cookiematch.storage import Store, connect_store

from .helpers import FakeClock
from support.stores import BACKENDS, empty_store_url


@pytest.fixture(params=["sqlite", "cluster"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An empty store of each kind the segments must work on unchanged."""
    store = await connect_store(empty_store_url(request, request.param, tmp_path))
    yield store
    await store.close()


@pytest.fixture
def wall_clock() -> FakeClock:
    """A clock the test sets by hand, starting now: Redis also expires fields on its own
    clock, so a store's clock must not start in the past."""
    return FakeClock(float(int(time.time())))


@pytest.fixture(params=BACKENDS)
async def clocked_store(
    request: pytest.FixtureRequest, tmp_path: Path, wall_clock: FakeClock
) -> AsyncIterator[Store]:
    """An empty store of each kind, expiring keys on ``wall_clock``."""
    store = await connect_store(empty_store_url(request, request.param, tmp_path), clock=wall_clock)
    yield store
    await store.close()
