"""Bid-time look-ups in process: ``MatchTable.lookup(gid)`` per second on each store.

    .venv/bin/python bench/lookup_bench.py [--seconds 3] [--concurrency 64] [--entries 100000]
        [--stores sqlite,redis]

Fills a buyer's match table with ``entries`` matches (write_many in batches), then runs
``concurrency`` coroutines doing what ``POST /bid`` does before deciding: one ``lookup`` of a
random known gid (a hit) or, for 10% of them, of an unknown gid (a miss). Redis: a private
redis-server on a free port (AOF off). Prints look-ups/s and per-call p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers

from cookiematch.buyer.matchtable import MatchCodec, MatchEntry, MatchTable
from cookiematch.storage import Write, open_store


def gid_of(i: int) -> str:
    return f"CAESE{i:022d}"


async def run(url: str, args: argparse.Namespace) -> dict[str, object]:
    store = open_store(url)
    await store.start()
    table = MatchTable(store, "finest-dsp", ttl_seconds=86400 * 28, clock=time.time)
    now = int(time.time())
    for start in range(0, args.entries, 5000):
        writes = []
        for i in range(start, min(start + 5000, args.entries)):
            entry = MatchEntry(gid_of(i), i.to_bytes(16, "big"), 1, now)
            writes.append(Write(table.keys.by_gid(entry.gid), MatchCodec.pack_by_gid(entry)))
        await store.write_many(writes)
    rnd = random.Random(7)
    latencies: list[float] = []
    hits = 0
    stop = 0.0

    async def loop() -> None:
        nonlocal hits
        while time.perf_counter() < stop:
            i = rnd.randrange(args.entries * 10 // 9)  # ~10% unknown gids
            t = time.perf_counter()
            found = await table.lookup(gid_of(i), None)
            latencies.append(time.perf_counter() - t)
            hits += found.by_gid is not None

    stop = time.perf_counter() + 0.5  # warm-up
    await asyncio.gather(*(loop() for _ in range(args.concurrency)))
    latencies.clear()
    hits = 0
    start = time.perf_counter()
    stop = start + args.seconds
    await asyncio.gather(*(loop() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - start
    await store.close()
    q = statistics.quantiles(latencies, n=100)
    return {
        "lookups_per_s": round(len(latencies) / elapsed),
        "p50_us": round(q[49] * 1e6),
        "p99_us": round(q[98] * 1e6),
        "hit_rate": round(hits / len(latencies), 3),
        "entries": args.entries,
        "concurrency": args.concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="cookiematch-lookups-") as tmp:
        work = Path(tmp)
        for store in args.stores.split(","):
            with contextlib.ExitStack() as stack:
                if store == "sqlite":
                    url = f"sqlite:///{work}/lookups.db"
                else:
                    port = stack.enter_context(servers.redis_server(work))
                    url = f"redis://127.0.0.1:{port}/0"
                result = asyncio.run(run(url, args))
            results[store] = result
            print(
                f"lookup by gid  {store:<7} {result['lookups_per_s']:>9,} look-ups/s   "
                f"p50 {result['p50_us']:>6} µs   p99 {result['p99_us']:>6} µs   "
                f"hits {result['hit_rate']:.0%}   ({args.entries:,} entries, "
                f"{args.concurrency} coroutines)",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
