"""DMP domain fixtures: a service over a real SQLite store in ``tmp_path``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cookiematch.dmp.service import DmpService
from cookiematch.storage import Store, open_store

from .helpers import FakeClock, make_service


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    """The store expires keys on the test's clock, as the service does."""
    opened = open_store(f"sqlite://{tmp_path / 'dmp.db'}", clock=clock)
    yield opened
    await opened.close()


@pytest.fixture
def service(store: Store, clock: FakeClock) -> DmpService:
    return make_service(store, clock)
