"""Two processes writing one SQLite store through their writer threads, which take turns
through the ``flock`` beside the database (``storage/sqlite_engine.py``): the latency of an
acknowledged ``set`` under each longest pause between two tries for the lock.

    PYTHONPATH=<tree>/src flock /tmp/bench.lock .venv/bin/python bench/writer_lock_bench.py \\
        [--pauses 0.005,0.0005,-1] [--seconds 3] [--rounds 2] [--concurrency 64]

Each process runs ``--concurrency`` coroutines, each awaiting ``set`` of a random key (a
200,000-row table, as under a benchmark) one after the other; the pauses alternate round by
round. Prints, per pause and round, the writes per second of both processes and the
latency's p50, p99 and max (ms). A pause of -1: the writers take turns through a second lock
(blocking, a measurement only).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path

ROWS = 200_000


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


def _child(path: str, pause: float, seconds: float, concurrency: int, out: mp.Queue) -> None:
    from cookiematch.storage import sqlite_engine
    from cookiematch.storage.sqlite import SQLiteStore

    if pause < 0:
        _take_turns(path)
    sqlite_engine.LOCK_LAST_PAUSE = pause
    latencies: list[float] = []

    async def run() -> None:
        store = SQLiteStore(path)
        stop = time.perf_counter() + seconds

        async def writer() -> None:
            while (start := time.perf_counter()) < stop:
                await store.set(os.urandom(12).hex(), b"v" * 40)
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(writer() for _ in range(concurrency)))
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
                p99 = latencies[int(len(latencies) * 0.99)]
                label = "turns" if pause < 0 else f"pause {pause * 1000:.2f} ms"
                print(
                    f"round {round_} {label:>15}: "
                    f"{len(latencies) / args.seconds:8,.0f} writes/s  "
                    f"p50 {statistics.median(latencies) * 1000:6.2f}  p99 {p99 * 1000:6.2f}  "
                    f"max {latencies[-1] * 1000:6.2f} ms",
                    flush=True,
                )


if __name__ == "__main__":
    main()
