"""The first seconds of a freshly started server under load: p99 and max latency second by
second, cookiematch's exchange beside the minimal cookie-match app (``minimal_cookie_match.py``)
and the bare-granian ceiling, each started anew for every attempt.

    flock /tmp/bench.lock .venv/bin/python bench/first_seconds.py [--seconds 6] [--attempts 2]
        [--workers 1] [--extra-path other/src]

wrk drives the one-cookie match tag (``lua/cookie_match.lua``, 64 connections) for one second
at a time, right after the server answers (cookiematch after ``http_bench.preflight``'s
requests); a max that only the first second shows is the start's, not the steady state's.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench
import servers


def seconds(port: int, count: int, connections: int) -> str:
    """``count`` one-second wrk runs: each one's p99 / max in ms."""
    runs = [
        servers.wrk(port, http_bench.LUA / "cookie_match.lua", duration=1, connections=connections)
        for _ in range(count)
    ]
    return "  ".join(f"{r.p99_ms:5.1f}/{r.max_ms:5.1f}" for r in runs)


@contextlib.contextmanager
def started(name: str, work: Path, args: argparse.Namespace) -> Iterator[int]:
    """A fresh server of kind ``name``; yields its port."""
    if name == "cookiematch":
        url = f"sqlite:///{work}/store.db"
        with servers.cookiematch(
            work, url, workers=args.workers, extra_path=args.extra_path
        ) as service:
            http_bench.preflight(service)
            yield service.port
    elif name == "minimal":
        with servers.minimal_app(work, "minimal_cookie_match", args.workers, {}) as (port, _):
            yield port
    else:
        with servers.granian_bare(work, args.workers) as (port, _):
            yield port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--attempts", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--extra-path", action="append", default=[])
    args = parser.parse_args()
    print(f"p99 / max ms of each second after the start, {args.workers} worker(s)")
    with tempfile.TemporaryDirectory(prefix="first-seconds-") as tmp:
        for attempt in range(args.attempts):
            for name in ("cookiematch", "minimal", "ceiling"):
                work = Path(tmp) / f"{name}-{attempt}"
                work.mkdir()
                with started(name, work, args) as port:
                    line = seconds(port, args.seconds, args.connections)
                print(f"{name:<12} {line}", flush=True)


if __name__ == "__main__":
    main()
