"""Store throughput side by side: sqlite, redis, redis cluster in one run, one table.

    .venv/bin/python bench/store_compare.py [--seconds 3] [--concurrency 64]

Starts a fresh redis-server and a 3-master cluster with replicas (free ports, temporary
directories, default persistence off: AOF/fsync costs are the operator's choice) and runs the
same phases on each backend: set ACK, set ASYNC (rate including the final flush), get,
get_many(10 keys), hset ACK (one field of a bucket, no TTL: what the buyer's match table
writes). Each cell is ops/s with the p99 latency; one process, one event loop. A second table
gives this process's CPU time per operation and, on Redis, per command sent (the client's
cost of a command: packing, parsing, bookkeeping).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from store_bench import hammer  # noqa: E402 (same directory: run as a script)
from tests.storage.redis_servers import RedisClusterProcesses, RedisServer  # noqa: E402

from cookiematch.storage import Durability, open_store  # noqa: E402
from cookiematch.storage.base import Write  # noqa: E402

VALUE = b"x" * 64
Cell = tuple[float, float, float, float]  # ops/s, p99 µs, CPU µs per op, CPU µs per command


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98] * 1e6


def commands(store: object) -> int:
    """Commands the store has sent (Redis), else 0."""
    return int(getattr(store, "commands", 0))


async def measured(
    store: object, op: Callable[[int, int], Awaitable[object]], args: argparse.Namespace
) -> Cell:
    cpu, sent = time.process_time(), commands(store)
    ops, elapsed, lat = await hammer(op, args.concurrency, args.seconds)
    return cell(ops, elapsed, lat, time.process_time() - cpu, commands(store) - sent)


def cell(ops: int, elapsed: float, lat: list[float], cpu: float, sent: int) -> Cell:
    return ops / elapsed, p99(lat), cpu * 1e6 / ops, cpu * 1e6 / sent if sent else 0.0


async def bench_set(url: str, durability: Durability, args: argparse.Namespace) -> Cell:
    writer = open_store(url, durability=durability)
    await writer.start()

    async def set_op(w: int, i: int) -> None:
        await writer.set(f"user:{durability.value}:{w}:{i}", VALUE, ttl=86400)

    cpu, sent = time.process_time(), commands(writer)
    ops, elapsed, lat = await hammer(set_op, args.concurrency, args.seconds)
    t = time.perf_counter()
    await writer.close()
    elapsed += time.perf_counter() - t  # ASYNC: include the final flush
    return cell(ops, elapsed, lat, time.process_time() - cpu, commands(writer) - sent)


async def run_backend(url: str, args: argparse.Namespace) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    for durability in Durability:
        cells[f"set {durability.value}"] = await bench_set(url, durability, args)
    store = open_store(url)
    n = 100_000
    for start in range(0, n, 10_000):
        await store.write_many([Write(f"k{i}", VALUE) for i in range(start, start + 10_000)])
    rnd = random.Random(1)

    async def get(w: int, i: int) -> None:
        await store.get(f"k{rnd.randrange(n)}")

    async def get_many(w: int, i: int) -> None:
        await store.get_many([f"k{rnd.randrange(n)}" for _ in range(10)])

    async def hset(w: int, i: int) -> None:
        await store.hset(f"bm:{w}:{i % 4096:x}", {f"f{w}.{i}": VALUE})

    cells["get"] = await measured(store, get, args)
    cells["get_many(10)"] = await measured(store, get_many, args)
    cells["hset"] = await measured(store, hset, args)
    await store.close()
    return cells


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis")
        cluster = RedisClusterProcesses(Path(tmp) / "cluster")
        try:
            urls = {
                "sqlite": f"sqlite:///{tmp}/store.db",
                "redis": server.url,
                "cluster": cluster.url,
            }
            results = {name: await run_backend(url, args) for name, url in urls.items()}
        finally:
            server.stop()
            cluster.stop()
    print(f"{args.concurrency} coroutines, {args.seconds:g} s per phase; ops/s (p99 µs)")
    print(f"{'phase':<14}" + "".join(f"{name:>22}" for name in results))
    for phase in results["sqlite"]:
        row = "".join(
            f"{results[b][phase][0]:>13,.0f} ({results[b][phase][1]:>5.0f})" for b in results
        )
        print(f"{phase:<14}{row}")
    print("CPU µs per op (per command sent)")
    for phase in results["sqlite"]:
        row = "".join(
            f"{results[b][phase][2]:>13.1f} ({results[b][phase][3]:>5.1f})" for b in results
        )
        print(f"{phase:<14}{row}")


if __name__ == "__main__":
    asyncio.run(main())
