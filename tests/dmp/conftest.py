"""DMP domain fixtures: a service, its trait writes and an ingestor over a real SQLite store
in ``tmp_path``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cookiematch.dmp.consent import RequestConsent
from cookiematch.dmp.ingest import Ingestor, build_ingestor
from cookiematch.dmp.service import DmpService
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.dmp.traits.writes import TraitStore
from cookiematch.storage import Store, open_store

from .helpers import FakeClock, consent, make_service


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
def traits(store: Store, clock: FakeClock) -> TraitStore:
    return TraitStore(store, TraitCatalog(), clock=clock)


@pytest.fixture
def ingestor(store: Store, traits: TraitStore, clock: FakeClock) -> Ingestor:
    return build_ingestor(store, traits, clock=clock)


@pytest.fixture
def service(store: Store, clock: FakeClock, traits: TraitStore, ingestor: Ingestor) -> DmpService:
    """Wired as the server wires it: a sync applies the ingested records that waited."""
    return make_service(store, clock, traits=traits, waiting=ingestor.pending)


@pytest.fixture
def quiet(service: DmpService) -> RequestConsent:
    """A request without any privacy signal (most traffic)."""
    return consent(service)
