"""In-process cost of a hot route through the RSGI adapter, without the network: µs per request.

    .venv/bin/python bench/handler_bench.py [--seconds 3] [--concurrency 64] [--store sqlite]
        [--endpoint cookie_match|hosted_match|...] [--profile out.html]

Builds the exchange App from a generated config exactly as a worker does, then drives
``RSGIAdapter.__call__`` with fake granian scope/protocol objects from ``concurrency``
coroutines for ``seconds``. It reports requests per second of *this process's CPU time* (so a
busy machine slows it less than wall-clock figures) and wall-clock rate. No granian, no socket:
the difference with the wrk figure is the server's I/O. ``--profile`` writes a pyinstrument
HTML report of the run (pip install pyinstrument).

Use it to measure a hot-path change before/after: it is far less noisy than wrk on a shared
machine. Background store work started by a request (monitoring) is drained at the end and
counted in the CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers

from cookiematch.config import load_config
from cookiematch.web.exchange_app import build_exchange_app
from cookiematch.web.http import Headers
from cookiematch.web.rsgi import RSGIAdapter

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
ACCEPT = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(ALPHABET[n % 64])
        n //= 64
    return "".join(reversed(out))


class Scope:
    """The attributes of granian's RSGI scope the adapter reads."""

    __slots__ = ("client", "headers", "method", "path", "proto", "query_string", "scheme")

    def __init__(self, path: str, query: str, cookie: str) -> None:
        self.proto = "http"
        self.method = "GET"
        self.path = path
        self.query_string = query
        self.scheme = "http"
        self.client = "127.0.0.1:50000"
        self.headers = Headers(
            [("host", "127.0.0.1"), ("user-agent", UA), ("accept", ACCEPT), ("cookie", cookie)]
        )


class Proto:
    """Records the status of the response the adapter sends."""

    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status = 0

    def response_empty(self, status: int, headers: Any) -> None:
        self.status = status

    def response_bytes(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status


def cookie_match(i: int) -> Scope:
    return Scope(
        "/pixel",
        "google_nid=ad_network_xyz&google_cm&p1=v1&p2=v2",
        "_ga=GA1.2.1234567890.1700000000; cm_id=AAECAwQFBgcICQoLDA0ODw; lang=en",
    )


def hosted_match(i: int) -> Scope:
    c = b64(i, 8)
    return Scope(
        "/pixel",
        f"google_nid=cookie-monster&google_cm&google_hm={c}benchAAA",
        f"_ga=GA1.2.1234567890.1700000000; cm_id=AAAbenchAAA{c}bmA; lang=en",
    )


ENDPOINTS: dict[str, Callable[[int], Scope]] = {
    "cookie_match": cookie_match,
    "hosted_match": hosted_match,
}


async def drive(args: argparse.Namespace, directory: Path) -> None:
    store_url = f"sqlite:///{directory}/exchange.db" if args.store == "sqlite" else args.store
    config_path = servers.write_exchange_config(directory, 0, store_url, args.durability)
    app = build_exchange_app(load_config(config_path))
    adapter = RSGIAdapter(app)
    await app.startup()
    runtime = next(h.__self__ for h in app.on_shutdown if hasattr(h, "__self__"))
    monitor = getattr(runtime, "monitor", None)
    if args.no_monitor and monitor is not None:  # what the match tag costs without it
        runtime.routes._service._monitor = None
    make = ENDPOINTS[args.endpoint]
    counter = itertools.count()
    statuses: dict[int, int] = {}
    stop_at = 0.0

    async def loop() -> None:
        while time.perf_counter() < stop_at:
            proto = Proto()
            await adapter(make(next(counter)), proto)
            statuses[proto.status] = statuses.get(proto.status, 0) + 1

    async def phase(seconds: float) -> tuple[int, float, float]:
        nonlocal stop_at
        statuses.clear()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        stop_at = wall0 + seconds
        await asyncio.gather(*(loop() for _ in range(args.concurrency)))
        if monitor is not None and monitor.pending_checks:
            backlog, t = monitor.pending_checks, time.perf_counter()
            await monitor.drain()
            print(
                f"   monitor backlog at the end: {backlog:,} checks,"
                f" drained in {time.perf_counter() - t:.2f} s"
            )
        return sum(statuses.values()), time.process_time() - cpu0, time.perf_counter() - wall0

    await phase(min(1.0, args.seconds))  # warm-up
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled", interval=0.0005)
        profiler.start()
    n, cpu, wall = await phase(args.seconds)
    if profiler is not None:
        profiler.stop()
        Path(args.profile).write_text(profiler.output_html())
    await app.shutdown()
    print(
        f"{args.endpoint:<14} {args.store:<8} {n / cpu:>9,.0f} req/CPU-s"
        f"  {1e6 * cpu / n:6.1f} µs/req"
        f"   {n / wall:>9,.0f} req/s wall   statuses {dict(sorted(statuses.items()))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), action="append")
    parser.add_argument("--store", default="sqlite", help="sqlite, or a redis:// URL")
    parser.add_argument("--durability", default="ack", choices=("ack", "async"))
    parser.add_argument(
        "--no-monitor", action="store_true", help="detach the buyer monitor (an experiment)"
    )
    parser.add_argument("--profile", default=None, help="pyinstrument HTML output path")
    args = parser.parse_args()
    endpoints = args.endpoint or sorted(ENDPOINTS)
    for endpoint in endpoints:
        args.endpoint = endpoint
        with tempfile.TemporaryDirectory() as tmp, contextlib.suppress(KeyboardInterrupt):
            os.environ.pop("COOKIEMATCH_CONFIG", None)
            asyncio.run(drive(args, Path(tmp)))


if __name__ == "__main__":
    main()
