"""What a prefix scan on Redis costs the event loop it runs on: the exchange's table sizes
(``exchange/table_sizes.py`` ``measure``: every hosted match key read, every ten minutes in
one worker) over N hosted-match entries on a private redis-server; its wall time, CPU, the
growth of the process's peak RSS, and how late at most a 1 ms sleep on the same loop woke
(``frequency_bench.probe``).

    .venv/bin/python bench/scan_pause.py [--keys 500000]

The tree measured is the one on ``PYTHONPATH`` (``src`` by default). Needs ``redis-server``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers
from frequency_bench import probe

from cookiematch.exchange import keys
from cookiematch.exchange.table_sizes import measure
from cookiematch.storage import connect_store
from cookiematch.storage.base import Write

FILL_BATCH = 5000
BUYERS = 3


def hosted_key(n: int) -> str:
    """The ``n``-th browser's hosted match entry, for one of ``BUYERS`` buyers."""
    return keys.hosted_match_key(n.to_bytes(16, "big"), f"dsp_{n % BUYERS}")


async def fill(url: str, count: int) -> None:
    store = await connect_store(url)
    try:
        for start in range(0, count, FILL_BATCH):
            batch = range(start, min(count, start + FILL_BATCH))
            await store.write_many([Write(hosted_key(n), b"x" * 40, 86400) for n in batch])
    finally:
        await store.close()


async def scan(url: str) -> None:
    store = await connect_store(url)
    lateness: list[float] = []
    try:
        ticker = asyncio.create_task(probe(math.inf, lateness))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        wall, cpu = time.perf_counter(), time.process_time()
        sizes = await measure(store, time.time)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
        ticker.cancel()
    finally:
        await store.close()
    print(
        f"{sum(sizes.hosted.values()):,} entries counted: {wall:.2f} s wall, {cpu:.2f} s CPU, "
        f"peak RSS +{grown:.0f} MB, the loop's longest lateness {max(lateness) * 1e3:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=500_000)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="scan-pause-") as tmp,
        servers.redis_server(Path(tmp)) as port,
    ):
        url = f"redis://127.0.0.1:{port}/0"
        asyncio.run(fill(url, args.keys))
        asyncio.run(scan(url))


if __name__ == "__main__":
    main()
