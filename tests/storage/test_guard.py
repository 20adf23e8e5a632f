"""``storage/guard.py`` and ``storage/breaker.py`` over real stores: a redis-server killed and
started again, a SQLite file write-locked by another connection."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cookiematch.errors import StoreUnavailable
from cookiematch.storage import Durability, Store, Write, open_store
from cookiematch.storage.breaker import MISSES_TO_OPEN, VERIFY_TIMEOUT
from cookiematch.storage.guard import GuardedStore
from cookiematch.storage.redis_store import RedisStore

from .redis_servers import RedisServer

DEADLINE = 0.05
AT_ONCE = 0.005  # seconds: a call refused while the breaker is open


class Observed:
    """What the guard's observers heard."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, str]] = []
        self.states: list[bool] = []

    def on_call(self, op: str, seconds: float, outcome: str) -> None:
        self.calls.append((op, seconds, outcome))

    def on_state(self, opened: bool) -> None:
        self.states.append(opened)

    def outcomes(self) -> list[str]:
        return [outcome for _, _, outcome in self.calls]


def guard(
    inner: Store, observed: Observed, *, deadline: float = DEADLINE, **options: int
) -> GuardedStore:
    return GuardedStore(
        inner,
        deadline=deadline,
        name="test store",
        on_call=observed.on_call,
        on_state=observed.on_state,
        **options,
    )


async def refused_at_once(store: Store) -> None:
    """Reads and writes fail at once with StoreUnavailable (95 in 100 within ``AT_ONCE``;
    none waits for the store: a scheduling hiccup of this shared machine may delay one)."""
    waits = []
    for _ in range(50):
        for call in (store.get("k"), store.set("k", b"v"), store.hgetall("m")):
            start = time.perf_counter()
            with pytest.raises(StoreUnavailable):
                await call
            waits.append(time.perf_counter() - start)
    waits.sort()
    assert waits[int(len(waits) * 0.95)] < AT_ONCE and waits[-1] < DEADLINE, waits[-5:]


async def until(condition: object, within: float) -> float:
    start = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - start < within, "never happened"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def breaker_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "cookiematch.storage.guard"]


# --- Redis --------------------------------------------------------------------------------


async def test_a_stopped_redis_opens_the_breaker_until_it_is_back(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    observed = Observed()
    inner = RedisStore.from_url(server.url)  # the flusher's own 5 s window
    await inner.start()
    store = guard(inner, observed)
    try:
        await store.set("before", b"1")
        assert await store.get("before") == b"1"
        assert observed.outcomes() == ["ok", "ok"] and not store.breaker_open

        server.kill9()
        start = time.perf_counter()
        with pytest.raises(StoreUnavailable):  # retried by the flusher: over its deadline
            await store.set("during", b"2")
        assert time.perf_counter() - start < DEADLINE + 0.1
        assert observed.outcomes()[-1] == "timeout" and not store.breaker_open
        with pytest.raises(StoreUnavailable):  # a read fails at once: the breaker opens
            await store.get("before")
        assert store.breaker_open and observed.states == [True]
        await refused_at_once(store)
        assert observed.outcomes()[-1] == "refused"

        server.start()  # the probe sees it back
        await until(lambda: not store.breaker_open, within=2.0)
        assert observed.states == [True, False]
        await store.set("after", b"3")
        assert await inner.get("after") == b"3"
        # the write cancelled by its deadline was dropped from the flusher's retries
        assert await inner.get("during") is None
    finally:
        await store.close()
    lines = breaker_lines(caplog)
    assert len(lines) == 2, lines
    assert "breaker opened" in lines[0] and "breaker closed" in lines[1]


# --- SQLite -------------------------------------------------------------------------------


@pytest.fixture
async def sqlite_path(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "store.db"
    store = open_store(f"sqlite:///{path}")  # the schema, before another connection locks it
    await store.close()
    yield path


def write_lock(path: Path) -> sqlite3.Connection:
    """Another connection holding the file's write lock (as another process would)."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_every_call_passes_through_and_is_observed(sqlite_path: Path) -> None:
    observed = Observed()
    # a deadline no healthy call misses, even on a loaded machine: this is about observing
    store = guard(open_store(f"sqlite:///{sqlite_path}"), observed, deadline=5.0)
    try:
        await store.set("p:a", b"1", ttl=60)
        assert await store.set_if_absent("p:b", b"2") is True
        await store.write_many([Write("p:c", b"3"), Write("p:a", None)])
        await store.hset("m:x", {"f": b"1"})
        await store.hset_many([("m:y", {"g": b"2"}, 60.0)])
        assert await store.get_many(["p:a", "p:b", "p:c"]) == [None, b"2", b"3"]
        assert await store.hgetall_many(["m:x", "m:y"]) == [{"f": b"1"}, {"g": b"2"}]
        assert await store.hget("m:x", "f") == b"1"
        assert store.batched_reads and await store.get_batched("p:c") == b"3"
        assert (await store.get_entry("p:b")) == (b"2", None)
        assert set(await store.hgetall_entries("m:y")) == {"g"}
        assert [key async for key, _ in store.scan("p:")] == ["p:b", "p:c"]
        assert [key async for key, _, _ in store.scan_ttl("p:")] == ["p:b", "p:c"]
        assert [list(page) async for page in store.scan_pages("p:", batch=1)] == [
            [("p:b", b"2")],
            [("p:c", b"3")],
        ]
        assert [key async for key, _ in store.scan_maps("m:")] == ["m:x", "m:y"]
        assert await store.hdel("m:x", ["f"]) == 1
        assert await store.delete("p:b") is True
        assert (await store.info())["breaker"] == "closed"
    finally:
        await store.close()
    assert set(observed.outcomes()) == {"ok"}
    ops = {"set", "hset_many", "scan_pages", "scan_maps", "delete"}
    assert {op for op, _, _ in observed.calls} >= ops


async def test_deadline_misses_on_a_locked_sqlite_file_open_the_breaker(
    sqlite_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    observed = Observed()
    store = guard(open_store(f"sqlite:///{sqlite_path}"), observed)
    try:
        await store.set("before", b"1")
        lock = write_lock(sqlite_path)
        for _ in range(MISSES_TO_OPEN):
            start = time.perf_counter()
            with pytest.raises(StoreUnavailable):
                await store.set("during", b"2")
            assert time.perf_counter() - start < DEADLINE + 0.1
        assert observed.outcomes()[-MISSES_TO_OPEN:] == ["timeout"] * MISSES_TO_OPEN
        # the misses start a probe; it writes, so it fails too: the store is away
        await until(lambda: store.breaker_open, within=VERIFY_TIMEOUT + 0.5)
        assert observed.states == [True]
        await refused_at_once(store)
        await asyncio.sleep(1.2)  # probes meanwhile: they write, so they fail too
        assert store.breaker_open

        lock.rollback()
        lock.close()
        await until(lambda: not store.breaker_open, within=2.0)
        await store.set("after", b"3")
        assert await store.get("after") == b"3"
    finally:
        await store.close()
    lines = breaker_lines(caplog)
    assert len(lines) == 2, lines


async def test_deadline_misses_of_a_store_that_answers_its_probe_leave_it_closed(
    sqlite_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A burst that makes calls late (here: a deadline shorter than any call) is not an
    outage: the probe the misses start is answered, and the breaker stays closed."""
    observed = Observed()
    inner = open_store(f"sqlite:///{sqlite_path}")
    store = GuardedStore(inner, deadline=1e-6, name="test store", on_call=observed.on_call,
                         on_state=observed.on_state)  # fmt: skip
    try:
        for _ in range(3 * MISSES_TO_OPEN):
            with pytest.raises(StoreUnavailable, match="within the deadline"):
                await store.set("k", b"v")
            await asyncio.sleep(0.05)  # time for the probe
        assert not store.breaker_open and observed.states == []
        assert store.breaker.busy >= 1
        assert await inner.get("k") == b"v"  # the late writes landed
    finally:
        await store.close()
    assert breaker_lines(caplog) == []


async def test_queued_writes_over_the_bound_are_refused_at_once_and_counted_lost(
    sqlite_path: Path,
) -> None:
    observed = Observed()
    inner = open_store(f"sqlite:///{sqlite_path}", durability=Durability.ASYNC)
    store = guard(inner, observed, max_backlog=5)
    lock = write_lock(sqlite_path)
    try:
        queued = 0
        while not store.over_backlog:  # the writer waits for the lock; the queue grows
            await store.set(f"k{queued}", b"v")
            queued += 1
            assert queued < 10
        for _ in range(3):
            start = time.perf_counter()
            with pytest.raises(StoreUnavailable, match="queued writes"):
                await store.hset("m", {"f": b"v"})
            assert time.perf_counter() - start < AT_ONCE
        assert store.lost == 3 and observed.outcomes()[-3:] == ["queue_full"] * 3
        assert not store.breaker_open  # a full queue refuses writes, not reads
        lock.rollback()
        await until(lambda: not store.over_backlog, within=5.0)
        assert await store.get_many([f"k{i}" for i in range(queued)]) == [b"v"] * queued
    finally:
        lock.close()
        await store.close()


async def test_views_share_one_breaker(sqlite_path: Path) -> None:
    observed = Observed()
    requests = guard(open_store(f"sqlite:///{sqlite_path}"), observed)
    admin = requests.view(1.0)
    try:
        lock = write_lock(sqlite_path)
        for _ in range(MISSES_TO_OPEN):
            with pytest.raises(StoreUnavailable):
                await requests.set("k", b"v")
        await until(lambda: admin.breaker_open, within=VERIFY_TIMEOUT + 0.5)
        await refused_at_once(admin)
        lock.rollback()
        lock.close()
        await until(lambda: not admin.breaker_open, within=2.0)
        await admin.set("k", b"v")  # within its own, longer deadline
        assert admin.deadline == 1.0 and requests.deadline == DEADLINE
    finally:
        await requests.close()
    with pytest.raises(StoreUnavailable):  # closing one view closed the backend
        await admin.get("k")


async def test_batched_reads_pass_the_breaker_and_are_observed(sqlite_path: Path) -> None:
    """``get_batched`` is counted and timed as a ``get``; once the breaker is open it is
    refused at once, as every call is; a closed backend trips it."""
    observed = Observed()
    store = guard(open_store(f"sqlite:///{sqlite_path}"), observed, deadline=5.0)
    try:
        await store.set("k", b"v")
        assert store.batched_reads and await store.get_batched("k") == b"v"
        assert observed.calls[-1][0::2] == ("get", "ok")
        store.breaker.trip("a test opens it")
        with pytest.raises(StoreUnavailable):
            await store.get_batched("k")
        assert observed.calls[-1][0::2] == ("get", "refused")
    finally:
        await store.close()
    queued = guard(open_store(f"sqlite:///{sqlite_path}", durability=Durability.ASYNC), observed)
    try:
        assert not queued.batched_reads  # a read there waits for the writes queued before it
    finally:
        await queued.close()


async def test_field_reads_of_a_turn_are_one_call_under_one_deadline(
    server: RedisServer,
) -> None:
    """``hget_batched``: the reads asked in one turn of the event loop go as one
    ``hget_many`` (one pipeline op), admitted, counted and timed once, each answered with its
    own value; a backend that does not answer within the deadline fails them all, and once
    the breaker is open they are refused together."""
    observed = Observed()
    inner = RedisStore.from_url(server.url)
    await inner.start()
    store = guard(inner, observed, deadline=5.0)
    try:
        await store.hset("m:1", {"a": b"1", "b": b"2"})
        await store.hset("m:2", {"a": b"3"})
        pairs = [("m:1", "a"), ("m:1", "b"), ("m:2", "a"), ("m:2", "z"), ("none", "a")]
        before = len(observed.calls)
        flushes = inner._flusher.flushes
        values = await asyncio.gather(*(store.hget_batched(k, f) for k, f in pairs))
        assert values == [b"1", b"2", b"3", None, None]
        assert [(op, outcome) for op, _, outcome in observed.calls[before:]] == [
            ("hget_many", "ok")
        ]
        assert inner._flusher.flushes == flushes + 1
        one, two = store.hget_batched("m:1", "a"), store.hget_batched("m:1", "b")
        one.cancel()  # a caller gone away leaves the others answered
        assert await two == b"2"

        slow = store.view(DEADLINE)
        server.kill9()  # the flusher retries nothing for reads: they fail, or time out
        start = time.perf_counter()
        reads = [slow.hget_batched("m:1", "a") for _ in range(3)]
        results = await asyncio.gather(*reads, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert time.perf_counter() - start < DEADLINE + 0.5
        await until(lambda: store.breaker_open, within=2.0)
        before = len(observed.calls)
        refused = [store.hget_batched("m:1", "a"), store.hget_batched("m:2", "a")]
        results = await asyncio.gather(*refused, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert [(op, outcome) for op, _, outcome in observed.calls[before:]] == [
            ("hget_many", "refused")
        ]
    finally:
        await store.close()
