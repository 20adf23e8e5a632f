"""A durable write served by one worker under wrk: the worker's CPU per request and its group
commits.

    PYTHONPATH=<tree>/src flock /tmp/bench.lock .venv/bin/python bench/served_write_bench.py
        [--runs 2] [--duration 5] [--connections 64]

Starts ``cookiematch serve`` (the exchange, SQLite, ``durability = "ack"``, one worker), warms
it up, then runs wrk with ``lua/unique.lua`` sending ``google_hm`` with ``google_cm`` (a new
browser and value per request, as ``http_bench.py`` sends them) ``--runs`` times. Each run
prints req/s, p50/p99, the worker's CPU over the run (every thread: the event loop, the
SQLite writer and readers; ``/proc``) as a share of one core and per request, and the group
commits (``cookiematch_store_batches_total`` and ``cookiematch_store_batched_ops_total`` from
``/metrics``): commits per second and writes per commit. Where the worker's time goes under
the same load: ``bench/profile_load.py --endpoint hosted_match``.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers

LUA = Path(__file__).resolve().parent / "lua" / "unique.lua"
ARGS = ["/pixel?google_nid=cookie-monster&google_cm&google_hm=@N@", "cm_id=@ID@"]


def metric(port: int, name: str) -> float:
    """A family's value summed over its labels, from ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
        text = response.read().decode()
    pattern = rf"^{name}(?:{{[^}}]*}})? (\S+)$"
    return sum(float(found.group(1)) for found in re.finditer(pattern, text, re.M))


def commits(port: int) -> tuple[float, float]:
    return (
        metric(port, "cookiematch_store_batches_total"),
        metric(port, "cookiematch_store_batched_ops_total"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with servers.cookiematch(work / "server", f"sqlite:///{work}/exchange.db") as service:
            pids, port = service.worker_pids(), service.port
            servers.wrk(port, LUA, duration=2, connections=args.connections, args=["1", *ARGS])
            for number in range(2, 2 + args.runs):
                batches, ops = commits(port)
                cpu = servers.cpu_seconds(pids)
                result = servers.wrk(
                    port, LUA, duration=args.duration, connections=args.connections,
                    args=[str(number), *ARGS],
                )  # fmt: skip
                spent = servers.cpu_seconds(pids) - cpu
                after = commits(port)
                batches, ops = after[0] - batches, after[1] - ops
                print(
                    f"{result.rps:8,.0f} req/s  p50 {result.p50_ms:.2f} ms  p99"
                    f" {result.p99_ms:.2f} ms  non-3xx {result.non_3xx}  worker CPU"
                    f" {100 * spent / args.duration:.0f} % of a core,"
                    f" {1e6 * spent / max(1, result.requests):.0f} µs/req  commits"
                    f" {batches / args.duration:.0f}/s, {ops / max(1, batches):.1f} writes each",
                    flush=True,
                )


if __name__ == "__main__":
    main()
