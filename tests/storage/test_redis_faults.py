"""Redis going away: under load, stopped without a word, a cluster master killed, a restart
with AOF ``always``.

Each test starts its own servers (the session's shared ones stay intact).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.storage import Durability
from cookiematch.storage.base import Write
from cookiematch.storage.redis_store import RedisStore

from .durability_child import value_of
from .redis_servers import RedisClusterProcesses, RedisServer, require_redis

CHILD = Path(__file__).with_name("durability_child.py")


async def timed(coro: object) -> tuple[float, BaseException | None]:
    start = time.monotonic()
    try:
        await coro  # type: ignore[misc]
    except StorageError as exc:
        return time.monotonic() - start, exc
    return time.monotonic() - start, None


async def test_redis_going_away_under_load(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    ack = RedisStore.from_url(server.url, retry_for=1.0)
    lazy = RedisStore.from_url(server.url, durability=Durability.ASYNC, retry_for=1.0)
    await ack.start()
    stop = asyncio.Event()

    async def load() -> None:
        i = 0
        while not stop.is_set():
            await asyncio.gather(
                lazy.set(f"a{i}", b"v"), ack.set(f"k{i}", b"v"), return_exceptions=True
            )
            i += 1

    loader = asyncio.create_task(load())
    try:
        await _away_and_back(server, ack, lazy, caplog)
    finally:
        stop.set()
        await loader
        await ack.close()
        await lazy.close()


async def _away_and_back(
    server: RedisServer, ack: RedisStore, lazy: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    await asyncio.sleep(0.3)
    server.kill9()
    with caplog.at_level(logging.WARNING):
        # while it is away, every call ends within a bounded time: writes after their retry
        # window, reads at once; unawaited writes are counted as lost
        results = await asyncio.gather(
            timed(ack.set("x", b"v")),
            timed(ack.write_many([Write("y", b"v")])),
            timed(ack.get("x")),
            timed(ack.delete("x")),
            timed(lazy.set("z", b"v")),
            *(timed(lazy.set(f"z{i}", b"v")) for i in range(100)),
        )
        for elapsed, _ in results:
            assert elapsed < 4.0
        assert all(isinstance(exc, StorageError) for _, exc in results[:4])
        await asyncio.sleep(1.5)
    assert lazy.lost > 0
    # the outage is logged once per store when it begins, not once per lost write
    outage = [r for r in caplog.records if "unreachable, queued writes" in r.getMessage()]
    assert len(outage) == 2, caplog.text
    caplog.set_level(logging.INFO)
    server.start()  # same port: writes resume
    deadline = time.monotonic() + 5
    while (await timed(ack.set("back", b"1")))[1] is not None:
        assert time.monotonic() < deadline
    await lazy.set("back2", b"2")
    assert await lazy.get_many(["back", "back2"]) == [b"1", b"2"]
    assert f"{lazy.lost} queued writes lost meanwhile" in caplog.text  # and its end once


async def test_close_while_redis_is_away_ends(server: RedisServer) -> None:
    store = RedisStore.from_url(server.url, durability=Durability.ASYNC, retry_for=0.5)
    await store.set("k", b"v")
    server.kill9()
    for i in range(100):
        await store.set(f"k{i}", b"v")
    elapsed, _ = await timed(store.close())
    assert elapsed < 3.0
    assert store.lost > 0


async def test_a_redis_that_stops_answering_fails_reads_at_the_socket_timeout(
    server: RedisServer,
) -> None:
    """A stopped redis-server accepts the bytes and never answers: each flush gives up at the
    connection's socket timeout (a read fails with StoreUnavailable, its connection dropped),
    an awaited write is retried until it lands once Redis answers again."""
    store = RedisStore.from_url(server.url, socket_timeout=0.3, retry_for=5.0)
    await store.set("k", b"v")
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        elapsed, exc = await timed(store.get("k"))
        assert isinstance(exc, StoreUnavailable)
        assert 0.25 <= elapsed < 1.5  # (the loop's clock counts whole milliseconds)
        write = asyncio.ensure_future(store.set("k", b"w"))
        await asyncio.sleep(0.5)  # one exchange timed out, the next waiting
        assert not write.done()
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    await asyncio.wait_for(write, 5)
    assert await store.get("k") == b"w"
    await store.close()


async def test_a_write_is_retried_with_backoff_until_its_window_closes(
    server: RedisServer,
) -> None:
    """Waits of 50 ms doubling to 500 ms between attempts: a 2 s window holds 8 attempts
    (at 0, 0.05, 0.15, 0.35, 0.75, 1.25, 1.75, 2.25 s), not hundreds."""
    store = RedisStore.from_url(server.url, retry_for=2.0)
    await store.start()
    server.kill9()
    before = store.flushes
    elapsed, exc = await timed(store.set("k", b"v"))
    assert isinstance(exc, StoreUnavailable)
    assert 2.0 <= elapsed < 4.0
    assert 6 <= store.flushes - before <= 8
    await store.close()


@pytest.fixture(scope="module")
def failover_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    require_redis()
    cluster = RedisClusterProcesses(tmp_path_factory.mktemp("failover"))
    yield cluster
    cluster.stop()


async def test_cluster_master_killed_writes_resume(failover_cluster: RedisClusterProcesses) -> None:
    store = RedisStore.from_url(failover_cluster.url, retry_for=15.0)
    await store.start()
    before = [f"before{i}" for i in range(3000)]  # every master gets its share of the slots
    await store.write_many([Write(k, k.encode()) for k in before])
    for master in failover_cluster.masters():  # acknowledged = applied on the master; make
        with master.client() as client:  # sure it reached the replica before the kill
            client.execute_command("WAIT", 1, 2000)
    victim = failover_cluster.masters()[0]
    victim.kill9()
    start = time.monotonic()
    after = [f"after{i}" for i in range(3000)]
    await asyncio.gather(*(store.set(k, k.encode()) for k in after))  # ACK: each waits
    assert time.monotonic() - start < 15
    failover_cluster.wait_ok(len(failover_cluster.servers))
    assert await store.get_many(before + after) == [k.encode() for k in before + after]
    await store.close()


async def test_acknowledged_writes_survive_redis_kill_9_with_aof(tmp_path: Path) -> None:
    require_redis()
    server = RedisServer(tmp_path / "aof", ["--appendonly", "yes", "--appendfsync", "always"])
    child = subprocess.Popen(
        [sys.executable, str(CHILD), server.url, "ack"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acked: list[str] = []
    try:
        while len(acked) < 3000:
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else ""
            acked.append(line.strip())
        server.kill9()  # writes in flight: some applied and fsynced, not all acknowledged
        server.start()  # same port, same directory: replays the AOF
        resumed = len(acked) + 500
        while len(acked) < resumed:  # the writer goes on once Redis is back
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else ""
            acked.append(line.strip())
    finally:
        child.kill()
        child.communicate(timeout=10)
        acked = [k for k in acked if k]
    store = RedisStore.from_url(server.url)
    values = await store.get_many(acked)
    await store.close()
    server.stop()
    lost = [k for k, v in zip(acked, values, strict=True) if v is None]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged keys lost: {lost[:5]}"
    assert values == [value_of(k) for k in acked]
