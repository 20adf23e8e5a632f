"""Frequency-capping checks applied in a child process (``exchange/check_process.py``), on a
real Redis and a real Redis Cluster: the same counts as in the worker, a child that dies is
replaced with its batch counted unread, a store it cannot reach is an error, not consent to
skip the checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cookiematch.errors import StoreUnavailable
from cookiematch.exchange.check_process import ChecksProcess
from cookiematch.exchange.frequency_checks import FrequencyChecks
from cookiematch.exchange.model import ExchangeSettings
from cookiematch.exchange.monitoring import BuyerMonitor, Count
from cookiematch.storage import Durability, connect_store
from exchange.test_frequency_checks import Counted, play_rounds
from storage.redis_servers import free_port

from support.clock import FakeClock
from support.stores import empty_store_url, shared_cluster, shared_redis  # noqa: F401

AT = 1_700_000_000


@pytest.fixture(params=["redis", "cluster"])
def server_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return empty_store_url(request, request.param, tmp_path)


@pytest.fixture
async def process(server_url: str) -> AsyncIterator[ChecksProcess]:
    child = ChecksProcess(server_url, Durability.ACK, ExchangeSettings(), deadline=5.0)
    child.start()
    yield child
    await child.close()


async def test_a_child_counts_what_the_worker_counts(
    server_url: str, process: ChecksProcess
) -> None:
    """One worker's checks in a child, the other's in the worker: every violation counted
    exactly, whichever saw the browser before."""
    store = await connect_store(server_url)
    clock, settings, counted = FakeClock(), ExchangeSettings(), Counted()
    workers = [
        BuyerMonitor(
            store, settings, clock=clock, worker_id="w1", on_count=counted, checks_process=process
        ),
        BuyerMonitor(store, settings, clock=clock, worker_id="w2", on_count=counted),
    ]
    await play_rounds(workers, clock, settings, counted, store)
    assert process.restarts == 0
    await store.close()


async def test_a_child_that_died_is_replaced(process: ChecksProcess, tmp_path: Path) -> None:
    """Its batch's first match tags are counted unread (not judged, not lost silently); the
    next batch goes to a new child, which judges against what the store holds."""
    checks = await recording(tmp_path)
    checks.record("dsp", b"b" * 16, AT)
    applied = await process.apply(checks.take())
    assert applied.error is None and applied.checks == 1 and not applied.unread
    assert process._process is not None
    process._process.kill()
    checks.record("dsp", b"b" * 16, AT + 10)
    checks.record("dsp", b"c" * 16, AT + 10)
    checks.record("dsp", b"d" * 16, AT + 10, push=True)  # a returned push: no check of its own
    applied = await process.apply(checks.take())
    assert isinstance(applied.error, StoreUnavailable)
    assert applied.unread == {"dsp": 2} and applied.checks == 3
    assert process.restarts == 1
    checks.record("dsp", b"b" * 16, AT + 20)
    applied = await process.apply(checks.take())
    assert applied.error is None
    assert applied.violations == {"dsp": 1}  # against the first batch's write, in the store


async def test_a_store_the_child_cannot_reach_is_an_error(tmp_path: Path) -> None:
    process = ChecksProcess(
        f"redis://127.0.0.1:{free_port()}/0", Durability.ACK, ExchangeSettings(), deadline=1.0
    )
    process.start()
    checks = await recording(tmp_path)
    checks.record("dsp", b"b" * 16, AT)
    checks.record("dsp2", b"b" * 16, AT)
    applied = await process.apply(checks.take())
    assert isinstance(applied.error, StoreUnavailable)
    assert applied.unread == {"dsp": 1, "dsp2": 1}
    assert process.restarts == 0  # the child answered
    await process.close()


async def test_the_monitor_hands_its_last_batch_over_when_it_closes(
    server_url: str, process: ChecksProcess
) -> None:
    store = await connect_store(server_url)
    counted = Counted()
    monitor = BuyerMonitor(
        store,
        ExchangeSettings(),
        clock=lambda: AT,
        worker_id="w",
        on_count=counted,
        checks_process=process,
    )
    monitor.gid_issued("dsp", b"b" * 16)
    monitor.gid_issued("dsp", b"b" * 16)
    await monitor.close()
    assert counted.by[Count.FREQUENCY_CAP_VIOLATIONS] == {"dsp": 1}
    assert process._process is None  # ended with the monitor
    await store.close()


async def recording(tmp_path: Path) -> FrequencyChecks:
    """Checks to record batches in and take them from (their own store is not used: the
    child applies them)."""
    return FrequencyChecks(
        await connect_store(f"sqlite:///{tmp_path}/unused.db"), ExchangeSettings()
    )


async def test_a_child_ends_when_its_worker_is_gone(process: ChecksProcess) -> None:
    """The worker's end of the pipe closes (the worker was killed): the child ends cleanly."""
    child, pipe = process._process, process._pipe
    assert child is not None and pipe is not None
    pipe.close()
    child.join(10)
    assert child.exitcode == 0
    process._process = process._pipe = None  # nothing left for the fixture to stop
