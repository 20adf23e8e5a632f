"""The Redis read path's CPU per read, beside the leanest client doing the same reads.

    flock /tmp/bench.lock .venv/bin/python bench/redis_read_bench.py [--callers 1,4,22,64]
        [--seconds 2] [--rounds 2]

A private redis-server (``servers.redis_server``) holds one field map; ``callers`` coroutines
each read one of its fields again and again (``HGET``) on uvloop for ``seconds``, through:

- ``store``: ``RedisStore.hget`` (the flusher, the wire, redis-py's connection);
- ``guarded``: the same store behind ``GuardedStore`` (deadline, breaker, no observer), as
  every role reads it;
- ``batched``: the guarded store's ``hget_batched``, as the buyer's bucketed ``/bid`` look-up
  reads: the reads of one turn as one guarded ``hget_many`` (``storage/turn_field_reads.py``);
- ``minimal``: ``bench/minimal_bid.py``'s ``MinimalRedis``, a standalone client of a dozen
  lines: one connection, the reads of one turn of the event loop in one write scheduled with
  ``call_soon``, the replies parsed by a ``hiredis.Reader`` where they arrive. No cookiematch
  code; no timeout, retry or reconnection: what the reads themselves cost on this machine.

Prints, per number of callers, each path's CPU per read in this process
(``time.process_time``, median over the rounds, the paths alternated in each round) and its
ratio to the minimal client's. With one caller a read is a round trip of its
own (the per-flush cost); with 64 about 64 reads share one (the per-read cost).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers
from http_bench import csv_list
from minimal_bid import MinimalRedis

from cookiematch.storage.guard import GuardedStore
from cookiematch.storage.registry import connect_store

KEY, FIELD = "bench:map", "field"


async def measure(read: Callable[[], Awaitable[Any]], callers: int, seconds: float) -> float:
    """This process's CPU µs per read with ``callers`` coroutines reading for ``seconds``."""
    reads = 0
    stop = time.monotonic() + seconds

    async def caller() -> None:
        nonlocal reads
        while time.monotonic() < stop:
            await read()
            reads += 1

    cpu = time.process_time()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return (time.process_time() - cpu) / max(reads, 1) * 1e6


async def run(args: argparse.Namespace, port: int) -> None:
    url = f"redis://127.0.0.1:{port}/0"
    store = await connect_store(url)
    await store.hset(KEY, {FIELD: b"v" * 25})
    guarded = GuardedStore(store, deadline=0.5, name="bench")
    _, minimal = await asyncio.get_running_loop().create_connection(MinimalRedis, "127.0.0.1", port)
    paths: dict[str, Callable[[], Awaitable[Any]]] = {
        "minimal": lambda: minimal.command("HGET", KEY, FIELD),
        "store": lambda: store.hget(KEY, FIELD),
        "guarded": lambda: guarded.hget(KEY, FIELD),
        "batched": lambda: guarded.hget_batched(KEY, FIELD),
    }
    assert await paths["guarded"]() == b"v" * 25  # (the minimal client reads the raw value,
    assert (await paths["minimal"]()).endswith(b"v" * 25)  # its header included)
    print(f"{'callers':>7} {'path':<8} {'CPU µs/read':>11} {'to minimal':>10}")
    for callers in args.callers:
        cpu: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, read in paths.items():
                cpu[name].append(await measure(read, callers, args.seconds))
        floor = statistics.median(cpu["minimal"])
        for name, runs in cpu.items():
            us = statistics.median(runs)
            print(f"{callers:>7} {name:<8} {us:>11.2f} {us / floor:>10.2f}", flush=True)
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=csv_list(int), default=[1, 4, 22, 64])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="redis-read-") as tmp,
        servers.redis_server(Path(tmp)) as port,
    ):
        uvloop.run(run(args, port))


if __name__ == "__main__":
    main()
