"""The SQLite writer's page cache against a file that outgrew it: CPU per durable write.

    .venv/bin/python bench/writer_cache_bench.py [--maps 600000] [--sizes 2,8,16,64]
        [--rounds 3] [--writes 30000] [--concurrency 32]

Fills one store file with ``--maps`` one-field maps at random keys (the shape of the DMP's
partner maps and the buyer monitor's browser records; about 100 MiB for 600,000), then, for
each writer page-cache size in turn (MiB; the sizes alternated over ``--rounds``), opens the
store on that file under ``ack`` as a worker does and sends ``--writes`` DMP-shaped writes
from ``--concurrency`` coroutines: each a ``swap_together`` of a new partner map field and a
new plain key at random places, group-committed by the writer. A warm-up of as many writes
first fills the cache. Prints, per size, the process's CPU per write (every thread: the
writer's commit is most of it) and the writes a commit, and the medians over the rounds.

Why the size matters (docs/performance.md, "The writer's page cache"): at the commit of a
transaction in which a B-tree balance renumbered pages, SQLite walks its page cache's whole
hash table, so a bigger cache costs every group commit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from cookiematch.storage.base import Durability, Write
from cookiematch.storage.sqlite import SQLiteStore

TTL = 30 * 86_400.0
FILL_BATCH = 2_000


def random_key(prefix: str) -> str:
    return f"{prefix}:{{{os.urandom(11).hex()}}}"


async def fill(path: str, maps: int) -> None:
    store = SQLiteStore(path, durability=Durability.ASYNC)
    try:
        for start in range(0, maps, FILL_BATCH):
            count = min(FILL_BATCH, maps - start)
            await store.hset_many(
                [(random_key("dmp"), {"analytics": os.urandom(40)}, TTL) for _ in range(count)]
            )
    finally:
        await store.close()  # after the queued writes are committed


async def drive(store: SQLiteStore, writes: int, concurrency: int) -> None:
    left = writes

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            forward = (random_key("dmp"), {"analytics": os.urandom(40)}, TTL)
            reverse = Write(random_key("pid"), os.urandom(30), TTL)
            await store.swap_together((reverse,), (forward,))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(path: str, cache_mib: int, writes: int, concurrency: int) -> tuple[float, float]:
    """µs of CPU per write and writes per commit with this cache size."""
    store = SQLiteStore(path, cache_mib=cache_mib, purge_interval=None)
    try:
        await drive(store, writes, concurrency)  # warm-up: the cache filled
        commits, done = store.commits, store.writes
        started = time.process_time()
        await drive(store, writes, concurrency)
        spent = time.process_time() - started
        return spent / writes * 1e6, (store.writes - done) / max(1, store.commits - commits)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=600_000)
    parser.add_argument("--sizes", default="2,8,16,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writes", type=int, default=30_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as folder:
        path = str(Path(folder) / "store.db")
        uvloop.run(fill(path, args.maps))
        print(f"file: {os.path.getsize(path) / 2**20:.0f} MiB, {args.maps:,} maps", flush=True)
        figures: dict[int, list[float]] = {size: [] for size in sizes}
        for round_ in range(args.rounds):
            order = sizes if round_ % 2 == 0 else sizes[::-1]
            for size in order:
                cpu, per_commit = uvloop.run(measure(path, size, args.writes, args.concurrency))
                figures[size].append(cpu)
                print(
                    f"round {round_ + 1}  cache {size:3d} MiB  {cpu:6.1f} µs CPU a write"
                    f"  {per_commit:5.1f} writes a commit",
                    flush=True,
                )
        for size in sizes:
            print(f"cache {size:3d} MiB: median {statistics.median(figures[size]):6.1f} µs a write")


if __name__ == "__main__":
    main()
