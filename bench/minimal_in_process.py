"""The minimal callback or ``/match`` app (``minimal_callback.py``, ``minimal_match.py``) driven
in process as ``handler_bench.py`` drives cookiematch's ``/callback/<partner>`` or ``/match``:
µs of CPU per request, all threads and the loop's.

    .venv/bin/python bench/minimal_in_process.py [--endpoint callback|match] [--mode threads]
        [--seconds 3] [--concurrency 64]

The same requests (``handler_bench.dmp_callback`` or ``handler_bench.buyer_match``: a new
browser and partner uid or gid each), the same fake granian scope and protocol objects, on
uvloop, against a new database: what the write's real work costs with no layer of ours, beside
``handler_bench.py --endpoint dmp_callback|buyer_match --loop uvloop``'s figure for cookiematch
(docs/performance.md, "The callbacks of a turn of the loop in one store call"). ``--mode``:
``minimal_match.py``'s ``MINIMAL_MODE``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

import handler_bench

ENDPOINTS = {  # the minimal app's module, and the requests handler_bench.py sends cookiematch
    "callback": ("minimal_callback", handler_bench.dmp_callback),
    "match": ("minimal_match", handler_bench.buyer_match),
}


async def drive(seconds: float, concurrency: int, endpoint: str) -> None:
    # each reads MINIMAL_DB (and minimal_match MINIMAL_MODE) when its first request opens it
    module = importlib.import_module(ENDPOINTS[endpoint][0])
    request = ENDPOINTS[endpoint][1]
    counter = itertools.count()
    statuses: dict[int, int] = {}
    stop_at = 0.0

    async def loop() -> None:
        while time.perf_counter() < stop_at:
            proto = handler_bench.Proto()
            await module.app(request(next(counter)), proto)
            statuses[proto.status] = statuses.get(proto.status, 0) + 1

    async def phase(length: float) -> tuple[int, float, float, float]:
        nonlocal stop_at
        statuses.clear()
        cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
        stop_at = wall + length
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return (
            sum(statuses.values()),
            time.process_time() - cpu,
            time.thread_time() - loop_cpu,
            time.perf_counter() - wall,
        )

    await phase(min(1.0, seconds))  # warm-up
    n, cpu, loop_cpu, wall = await phase(seconds)
    print(
        f"minimal {endpoint:<9} {1e6 * cpu / n:6.1f} µs/req  loop {1e6 * loop_cpu / n:5.1f} µs/req"
        f"   {n / wall:>9,.0f} req/s wall   statuses {dict(sorted(statuses.items()))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="callback")
    parser.add_argument("--mode", default="threads", help="minimal_match's MINIMAL_MODE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINIMAL_DB"] = str(Path(tmp) / "store.db")
        os.environ["MINIMAL_MODE"] = args.mode
        uvloop.run(drive(args.seconds, args.concurrency, args.endpoint))


if __name__ == "__main__":
    main()
