"""Throughput of the embedded store: concurrent set() under ACK and ASYNC, then get().

    .venv/bin/python bench/store_bench.py [--seconds 5] [--concurrency 64] [--readers 2]

Each phase runs ``concurrency`` coroutines in a loop for ``seconds`` on a fresh file in a
temporary directory (``--dir`` to pick the disk). ASYNC is reported twice: the rate at which
set() returned and the rate including the final flush (close). Latencies are per call.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from cookiematch.storage import Durability
from cookiematch.storage.base import Write
from cookiematch.storage.sqlite import SQLiteStore

VALUE = b"x" * 64


async def hammer(
    op: Callable[[int, int], Awaitable[object]], concurrency: int, seconds: float
) -> tuple[int, float, list[float]]:
    """Run ``op(worker, i)`` in ``concurrency`` loops; return ops, elapsed, latencies."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def loop(w: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            t = time.perf_counter()
            await op(w, i)
            latencies.append(time.perf_counter() - t)
            i += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(concurrency)))
    return len(latencies), time.perf_counter() - start, latencies


def line(name: str, ops: int, elapsed: float, latencies: list[float], extra: str = "") -> None:
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{name:<28} {ops / elapsed:>10,.0f} ops/s   p50 {q[49] * 1e6:>7.0f} µs"
        f"   p99 {q[98] * 1e6:>7.0f} µs   {extra}"
    )


async def bench_writes(directory: Path, durability: Durability, args: argparse.Namespace) -> None:
    store = SQLiteStore(str(directory / f"w-{durability.value}.db"), durability=durability)

    async def op(w: int, i: int) -> None:
        await store.set(f"user:{w}:{i}", VALUE, ttl=86400)

    ops, elapsed, latencies = await hammer(op, args.concurrency, args.seconds)
    t = time.perf_counter()
    await store.close()
    flushed = elapsed + time.perf_counter() - t
    batch = f"{store.writes / max(store.commits, 1):.0f} writes/commit"
    line(f"set {durability.value}", ops, elapsed, latencies, batch)
    if durability is Durability.ASYNC:
        print(f"{'  incl. final flush':<28} {ops / flushed:>10,.0f} ops/s")


async def bench_reads(directory: Path, args: argparse.Namespace) -> None:
    path = str(directory / "r.db")
    store = SQLiteStore(path, readers=args.readers)
    n = 100_000
    for start in range(0, n, 10_000):
        await store.write_many([Write(f"k{i}", VALUE) for i in range(start, start + 10_000)])
    rnd = random.Random(1)

    async def get(w: int, i: int) -> None:
        await store.get(f"k{rnd.randrange(n)}")

    async def get_many(w: int, i: int) -> None:
        await store.get_many([f"k{rnd.randrange(n)}" for _ in range(10)])

    line(f"get ({args.readers} readers)", *await hammer(get, args.concurrency, args.seconds))
    ops, elapsed, latencies = await hammer(get_many, args.concurrency, args.seconds)
    line("get_many(10 keys)", ops, elapsed, latencies, f"= {10 * ops / elapsed:,.0f} keys/s")
    await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="where the files go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"{args.concurrency} coroutines, {args.seconds:g} s per phase, files in {tmp}")
        for durability in Durability:
            await bench_writes(Path(tmp), durability, args)
        await bench_reads(Path(tmp), args)


if __name__ == "__main__":
    asyncio.run(main())
