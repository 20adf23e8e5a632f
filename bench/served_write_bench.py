"""A durable write served by one worker under wrk: the worker's CPU per request, by thread,
and its group commits.

    PYTHONPATH=<tree>/src flock /tmp/bench.lock .venv/bin/python bench/served_write_bench.py
        [--endpoint google_hm|buyer_match|dmp_callback|cookie_match_distinct] [--runs 2]
        [--duration 5]
        [--connections 64] [--store sqlite|redis]

Starts ``cookiematch serve`` (the endpoint's role, SQLite with ``durability = "ack"`` or a
private redis-server, one worker), warms it up, then runs wrk with ``lua/unique.lua`` (a new
browser and value per request, as ``http_bench.py`` sends them): the exchange's ``google_hm``
with ``google_cm``, the buyer's ``/match``, or the DMP's ``/callback/<partner>`` (or the
exchange's cookie match, no write but a new browser's frequency check), ``--runs`` times.
Each run prints req/s, p50/p99, the worker's CPU over the run (every thread: the event loop,
granian's I/O threads, the SQLite writer and readers; ``/proc``) as a share of one core and
per request, the same per thread name, and the group commits
(``cookiematch_store_batches_total`` and ``cookiematch_store_batched_ops_total`` from
``/metrics``): commits per second and writes per commit. Where the worker's time goes under
the same load: ``bench/profile_load.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers

LUA = Path(__file__).resolve().parent / "lua" / "unique.lua"
ENDPOINTS = {
    "google_hm": (
        "exchange",
        ["/pixel?google_nid=cookie-monster&google_cm&google_hm=@N@", "cm_id=@ID@"],
    ),
    "buyer_match": ("buyer", ["/match?google_gid=@N@&google_cver=1", "buyer_uid=@ID@"]),
    "dmp_callback": ("dmp", ["/callback/analytics?c=shop&uid=@N@", "dmp_id=@ID@"]),
    # no write: the cookie match from a different browser per request (its frequency check)
    "cookie_match_distinct": (
        "exchange",
        ["/pixel?google_nid=ad_network_xyz&google_cm&p1=v1&p2=v2", "cm_id=@ID@; lang=en"],
    ),
}


def thread_cpu(pids: list[int]) -> Counter[str]:
    """User + system CPU seconds by thread over the processes ``pids``: ``main`` (the event
    loop), then the others by their order of creation (``t1`` ...: granian's and the store's
    threads; ``py-spy dump`` names them)."""
    spent: Counter[str] = Counter()
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        tasks = sorted(int(task.name) for task in Path(f"/proc/{pid}/task").iterdir())
        for number, tid in enumerate(tasks):
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            spent["main" if tid == pid else f"t{number}"] += (
                int(fields[11]) + int(fields[12])
            ) / tick
    return spent


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
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="google_hm")
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    role, template = ENDPOINTS[args.endpoint]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        if args.store == "redis":
            url = f"redis://127.0.0.1:{stack.enter_context(servers.redis_server(work))}/0"
        else:
            url = f"sqlite:///{work}/{role}.db"
        service = stack.enter_context(servers.cookiematch(work / "server", url, role=role))
        pids, port = service.worker_pids(), service.port
        servers.wrk(port, LUA, duration=2, connections=args.connections, args=["1", *template])
        for number in range(2, 2 + args.runs):
            batches, ops = commits(port)
            threads = thread_cpu(pids)
            result = servers.wrk(
                port, LUA, duration=args.duration, connections=args.connections,
                args=[str(number), *template],
            )  # fmt: skip
            threads = thread_cpu(pids) - threads
            spent = sum(threads.values())
            after = commits(port)
            batches, ops = after[0] - batches, after[1] - ops
            requests = max(1, result.requests)
            print(
                f"{result.rps:8,.0f} req/s  p50 {result.p50_ms:.2f} ms  p99"
                f" {result.p99_ms:.2f} ms  non-3xx {result.non_3xx}  worker CPU"
                f" {100 * spent / args.duration:.0f} % of a core,"
                f" {1e6 * spent / requests:.0f} µs/req  commits"
                f" {batches / args.duration:.0f}/s, {ops / max(1, batches):.1f} writes each",
                flush=True,
            )
            print(
                "    µs/req by thread: "
                + ", ".join(
                    f"{name} {1e6 * cpu / requests:.1f}" for name, cpu in threads.most_common()
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
