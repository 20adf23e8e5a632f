"""Two processes writing one SQLite store through their writer threads, which take turns
through the ``flock`` beside the database (``storage/sqlite_engine.py``): the latency of an
acknowledged ``set`` under each longest pause between two tries for the lock.

    PYTHONPATH=<tree>/src flock /tmp/bench.lock .venv/bin/python bench/writer_lock_bench.py \\
        [--pauses 0.0005,-3,-1,-2] [--seconds 3] [--rounds 2] [--concurrency 64]

Each process runs ``--concurrency`` coroutines, each awaiting ``set`` of a random key (a
200,000-row table, as under a benchmark) one after the other; the pauses alternate round by
round. Prints, per pause and round, the writes per second of both processes, the
latency's p50, p99 and max (ms) and the CPU of every process per write (µs). The writers
take turns as the store does (the turn file, then the lock, both tried without blocking); a
pause of -3: the lock alone, without the turn file (as before it); -1: turns through
blocking ``flock`` calls (no busy timeout: a measurement only); -2:
one writer for both, a third process that alone opens the store and applies what the two
send it over a Unix socket (each read's writes as one ``write_many``, acknowledged once
committed), so no lock is taken and the two processes' writes share each group commit.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import struct
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROWS = 200_000
BLOCKING = -1.0  # the pause that stands for turns through blocking flock calls
SINGLE = -2.0  # ... for one writer process for both
NO_TURN = -3.0  # ... for the writer lock alone, without the turn file (before it)
_FRAME = struct.Struct("<Q24s40s")  # a write sent to the single writer: its id, key, value
_ACK = struct.Struct("<Q")


def _take_turns(path: str) -> None:
    """The writer lock taken in turns: a writer queues on a second lock file first, and keeps
    it until it holds the writer lock, so that a writer that just committed waits behind the
    one that was waiting (blocking ``flock``, no time limit: a measurement only)."""
    import fcntl

    from cookiematch.storage import sqlite_engine

    turn = os.open(path + "-writer.turn", os.O_RDWR | os.O_CREAT, 0o644)

    def lock(self: sqlite_engine.Engine) -> bool:
        fcntl.flock(turn, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._writer_lock, fcntl.LOCK_EX)  # type: ignore[arg-type]
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)
        return True

    sqlite_engine.Engine._lock_writer = lock  # type: ignore[method-assign]


def _single_writer(path: str, address: str, ready: mp.Queue) -> None:
    """The one writer: applies what each connection sends, acknowledging each write once its
    batch is committed."""
    from cookiematch.storage.base import Write
    from cookiematch.storage.sqlite import SQLiteStore

    async def serve() -> None:
        store = SQLiteStore(path)
        done = asyncio.Event()
        clients = 0

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal clients
            clients += 1
            buffered = b""
            while chunk := await reader.read(65536):
                buffered += chunk
                whole = len(buffered) - len(buffered) % _FRAME.size
                frames = list(_FRAME.iter_unpack(buffered[:whole]))
                buffered = buffered[whole:]
                await store.write_many([Write(key.hex(), value) for _, key, value in frames])
                writer.write(b"".join(_ACK.pack(ident) for ident, _, _ in frames))
            writer.close()
            clients -= 1
            if clients == 0:
                done.set()

        server = await asyncio.start_unix_server(client, address)
        ready.put(True)
        await done.wait()
        server.close()
        await store.close()

    asyncio.run(serve())


class _Remote:
    """A client process's writes, sent to the single writer; ``set`` returns once acked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._ids = 0
        self._acks = asyncio.get_running_loop().create_task(self._read_acks())

    async def set(self, key: str, value: bytes) -> None:
        self._ids += 1
        fut = self._waiting[self._ids] = asyncio.get_running_loop().create_future()
        self._writer.write(_FRAME.pack(self._ids, bytes.fromhex(key), value))
        await fut

    async def _read_acks(self) -> None:
        while True:
            data = await self._reader.readexactly(_ACK.size)
            for (ident,) in _ACK.iter_unpack(data + await self._more()):
                self._waiting.pop(ident).set_result(None)

    async def _more(self) -> bytes:
        pending = len(self._reader._buffer)  # type: ignore[attr-defined]  # what has arrived
        pending -= pending % _ACK.size
        return await self._reader.readexactly(pending) if pending else b""

    async def close(self) -> None:
        self._acks.cancel()
        self._writer.close()


def _child(path: str, pause: float, seconds: float, concurrency: int, out: mp.Queue) -> None:
    from cookiematch.storage import sqlite_engine
    from cookiematch.storage.sqlite import SQLiteStore

    if pause == SINGLE:
        _child_of_single(path, seconds, concurrency, out)
        return
    if pause == BLOCKING:
        _take_turns(path)
    if pause > 0:
        sqlite_engine.LOCK_LAST_PAUSE = pause

    async def open_local() -> SQLiteStore:
        store = SQLiteStore(path)
        if pause == NO_TURN:
            store._engine._writer_turn = None
        return store

    _time_sets(open_local, seconds, concurrency, out)


def _child_of_single(path: str, seconds: float, concurrency: int, out: mp.Queue) -> None:
    async def open_remote() -> _Remote:
        return _Remote(*await asyncio.open_unix_connection(path + ".sock"))

    _time_sets(open_remote, seconds, concurrency, out)


def _time_sets(
    open_store: Callable[[], Awaitable[Any]], seconds: float, concurrency: int, out: mp.Queue
) -> None:
    """``concurrency`` coroutines awaiting ``set`` of random keys one after the other for
    ``seconds`` on the store ``open_store`` opens; their latencies put in ``out``."""
    latencies: list[float] = []

    async def run() -> None:
        store = await open_store()
        stop = time.perf_counter() + seconds

        async def one() -> None:
            while (start := time.perf_counter()) < stop:
                await store.set(os.urandom(12).hex(), b"v" * 40)
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(one() for _ in range(concurrency)))
        await store.close()

    asyncio.run(run())
    out.put(latencies)


async def _fill(path: str) -> None:
    from cookiematch.storage.base import Write
    from cookiematch.storage.sqlite import SQLiteStore

    store = SQLiteStore(path)
    for i in range(0, ROWS, 1000):
        await store.write_many([Write(os.urandom(12).hex(), b"v" * 40) for _ in range(1000)])
        del i
    await store.close()


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pauses", default="0.005,0.0005")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    pauses = [float(p) for p in args.pauses.split(",")]
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "store.db")
        asyncio.run(_fill(path))
        for round_ in range(1, args.rounds + 1):
            for pause in pauses:
                cpu_before = _children_cpu()
                single = None
                if pause == SINGLE:
                    ready: mp.Queue = ctx.Queue()
                    single = ctx.Process(target=_single_writer, args=(path, path + ".sock", ready))
                    single.start()
                    ready.get()
                out: mp.Queue = ctx.Queue()
                procs = [
                    ctx.Process(
                        target=_child, args=(path, pause, args.seconds, args.concurrency, out)
                    )
                    for _ in range(2)
                ]
                for proc in procs:
                    proc.start()
                latencies = sorted(out.get() + out.get())
                for proc in procs:
                    proc.join()
                if single is not None:
                    single.join()
                    os.unlink(path + ".sock")
                cpu = (_children_cpu() - cpu_before) / len(latencies) * 1e6
                p99 = latencies[int(len(latencies) * 0.99)]
                label = {SINGLE: "one writer", BLOCKING: "blocking turns", NO_TURN: "no turn"}.get(
                    pause, f"pause {pause * 1000:.2f} ms"
                )
                print(
                    f"round {round_} {label:>15}: "
                    f"{len(latencies) / args.seconds:8,.0f} writes/s  "
                    f"p50 {statistics.median(latencies) * 1000:6.2f}  p99 {p99 * 1000:6.2f}  "
                    f"max {latencies[-1] * 1000:6.2f} ms  cpu {cpu:6.1f} µs/write",
                    flush=True,
                )


if __name__ == "__main__":
    main()
