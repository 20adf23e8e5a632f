"""``POST /bid`` in process beside the minimal app (``minimal_bid.py``) doing the same real work,
rounds alternated in one process: µs of CPU per request of each, and their difference.

    flock /tmp/bench.lock .venv/bin/python bench/bid_in_process.py [--store sqlite|redis://h:p/db]
        [--rounds 4] [--seconds 1.5] [--concurrency 64]

cookiematch's buyer as ``bench/handler_bench.py`` builds it, its gid matched first (which
writes the entry both read); the same request and fake granian objects drive both on uvloop:
cookiematch through its RSGI adapter, the minimal app called directly (on SQLite it reads on
the loop, ``MINIMAL_READ=loop``; on Redis through its minimal pipelining client). What the
served figures of ``bench/bid_reference.py`` hold beyond these is granian's and the kernel's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

import handler_bench
from handler_bench import Proto

from cookiematch.web.rsgi import RSGIAdapter

App = Callable[[Any, Proto], Awaitable[None]]


async def drive(args: argparse.Namespace, directory: Path) -> None:
    if args.store == "sqlite":
        store_url = f"sqlite:///{directory}/buyer.db"
        os.environ.update(MINIMAL_READ="loop", MINIMAL_DB=f"{directory}/buyer.db")
    else:
        store_url = args.store
        os.environ.update(MINIMAL_READ="redis", MINIMAL_REDIS=args.store.split("://", 1)[1])
    server = handler_bench.build_server("buyer", directory, store_url, "ack")
    adapter = RSGIAdapter(server.app)
    await server.app.startup()
    make = await handler_bench.bid(adapter, directory)
    scope, body = make(0)
    import minimal_bid  # reads its environment on its first request

    apps: dict[str, App] = {"cookiematch": adapter, "minimal": minimal_bid.full}
    for name, app in apps.items():
        proto = Proto(body)
        await app(scope, proto)
        if proto.status != 200:
            raise SystemExit(f"{name} preflight: {proto.status}")
    stop_at = 0.0

    async def loop(app: App) -> int:
        n = 0
        while time.perf_counter() < stop_at:
            await app(scope, Proto(body))
            n += 1
        return n

    spent: dict[str, list[float]] = {name: [] for name in apps}
    for round_ in range(args.rounds + 1):  # the first round warms up
        for name in apps if round_ % 2 else list(apps)[::-1]:
            stop_at = time.perf_counter() + args.seconds
            cpu = time.process_time()
            n = sum(await asyncio.gather(*(loop(apps[name]) for _ in range(args.concurrency))))
            if round_:
                spent[name].append((time.process_time() - cpu) / n * 1e6)
    await server.app.shutdown()
    for name, values in spent.items():
        print(
            f"{name:<12} {args.store:<8} best {min(values):5.1f}"
            f"  median {statistics.median(values):5.1f} µs/req"
        )
    gap = statistics.median(spent["cookiematch"]) - statistics.median(spent["minimal"])
    print(f"cookiematch beyond the minimal app: {gap:+.1f} µs/req (medians)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite", help="sqlite, or a redis:// URL")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bid-in-process-") as tmp:
        uvloop.run(drive(args, Path(tmp)))


if __name__ == "__main__":
    main()
