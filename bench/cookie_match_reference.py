"""The exchange's cookie match beside what is reachable: nginx's static 302, granian answering
that 302 from a bare callable (the ceiling of any Python handler), the minimal standalone RSGI
app doing the cookie match's real work (``bench/minimal_cookie_match.py``), and cookiematch's
exchange (SQLite, ``durability = "ack"``), under the same wrk load, rounds alternated in one
run; with one repeated cookie (``lua/cookie_match.lua``) and with a new browser per request
(``lua/unique.lua``, as ``http_bench.py`` sends them).

    flock /tmp/bench.lock .venv/bin/python bench/cookie_match_reference.py [--workers 1,2]
        [--rounds 3] [--duration 3] [--base /path/to/other/src] [--only one,distinct]
        [--minimal thread,none]

The minimal app is served applying its frequency-capping checks (``thread``) and without
them (``none``), to tell the checks' cost from the rest. ``--base``: a second cookiematch
exchange from another tree, served beside this one. Prints each round, then per load each
server's median req/s, p50/p99, the worst max, the CPU its processes used per request, and
its ratios to nginx and to the ceiling (median, min-max over the rounds).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench
import servers
from bid_reference import tree
from servers import WrkResult

LOADS = {"one": http_bench.ONE_COOKIE, "distinct": http_bench.DISTINCT_BROWSERS}


def run(args: argparse.Namespace, work: Path, workers: int) -> None:
    with contextlib.ExitStack() as stack:
        ports: dict[str, int] = {"nginx": stack.enter_context(servers.nginx(work, "auto"))}
        roots = {"nginx": int((work / "nginx-auto" / "nginx.pid").read_text().split()[0])}
        ceiling = "ceiling (bare granian)"
        ports[ceiling], roots[ceiling] = stack.enter_context(servers.granian_bare(work, workers))
        for checks in args.minimal:
            name = "minimal" if checks == "thread" else "minimal (no checks)"
            env = {"MINIMAL_CHECKS": checks}
            served = servers.minimal_app(work / name, "minimal_cookie_match", workers, env)
            ports[name], roots[name] = stack.enter_context(served)
            url = f"http://127.0.0.1:{ports[name]}{http_bench.COOKIE_MATCH_PATH}"
            answer = http_bench.fetch(url, cookie=f"cm_id={http_bench.BUYER_UID}; lang=en")
            print(f"   {name} preflight: {answer[0]} {answer[1]}", flush=True)
        trees = {"cookiematch": [], **{f"cookiematch (base {i + 1})": [b] for i, b in
                                         enumerate(args.base or ())}}  # fmt: skip
        for n, (name, extra) in enumerate(trees.items()):
            directory = work / f"exchange-{n}"
            url = f"sqlite:///{directory}/store.db"
            service = stack.enter_context(
                servers.cookiematch(directory, url, workers=workers, extra_path=extra)
            )
            print(f"   {name} preflight: {http_bench.preflight(service)}", flush=True)
            ports[name], roots[name] = service.port, service.proc.pid
        for load in args.only:
            endpoint = LOADS[load]
            results: dict[str, list[WrkResult]] = {name: [] for name in ports}
            cpu_us: dict[str, list[float]] = {name: [] for name in ports}
            for rnd in range(args.rounds):
                for name, port in ports.items():
                    pids = tree(roots[name])
                    before = servers.cpu_seconds(pids)
                    result = servers.wrk(
                        port,
                        http_bench.LUA / endpoint.script,
                        duration=args.duration,
                        connections=args.connections,
                        args=endpoint.args(rnd, work),
                    )
                    used = servers.cpu_seconds(pids) - before
                    results[name].append(result)
                    cpu_us[name].append(used / max(result.requests, 1) * 1e6)
                    print(
                        f"   round {rnd + 1} {load:<8} {name:<24} {result.rps:>9,.0f} req/s"
                        f" p99 {result.p99_ms:6.2f} max {result.max_ms:6.1f} ms",
                        flush=True,
                    )
            report(f"{endpoint.name}, {workers} worker{'s' if workers > 1 else ''}", results,
                   cpu_us)  # fmt: skip


def report(title: str, results: dict[str, list[WrkResult]], cpu_us: dict[str, list[float]]) -> None:
    """One table: each server's medians and its ratios to nginx and to the ceiling."""
    nginx, ceiling = results["nginx"], results["ceiling (bare granian)"]
    print(f"\n== {title}")
    print(
        f"{'server':<24} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'CPU µs/req':>10}"
        "  to nginx (min-max)  to ceiling (min-max)"
    )
    for name, runs in results.items():
        to_nginx = [r.rps / n.rps for r, n in zip(runs, nginx, strict=True)]
        to_ceiling = [r.rps / c.rps for r, c in zip(runs, ceiling, strict=True)]
        rps = statistics.median(r.rps for r in runs)
        bad = sum(r.non_3xx + r.socket_errors for r in runs)
        print(
            f"{name:<24} {rps:>9,.0f} {statistics.median(r.p50_ms for r in runs):>7.2f}"
            f" {statistics.median(r.p99_ms for r in runs):>7.2f}"
            f" {max(r.max_ms for r in runs):>7.1f}"
            f" {statistics.median(cpu_us[name]):>10.1f}"
            f"  {statistics.median(to_nginx):.3f} ({min(to_nginx):.2f}-{max(to_nginx):.2f})"
            f"   {statistics.median(to_ceiling):.3f} ({min(to_ceiling):.2f}-{max(to_ceiling):.2f})"
            + (f"  non-3xx or errors: {bad}" if bad else ""),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=http_bench.csv_list(int), default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--only", type=http_bench.csv_list(str), default=list(LOADS))
    parser.add_argument(
        "--minimal",
        type=http_bench.csv_list(str),
        default=["thread", "none"],
        help="the minimal app's variants: thread (its checks applied), none (no checks)",
    )
    parser.add_argument(
        "--base", action="append", help="another tree's src, served beside ours (repeatable)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cookie-match-reference-") as tmp:
        for workers in args.workers:
            work = Path(tmp) / f"w{workers}"
            work.mkdir()
            run(args, work, workers)


if __name__ == "__main__":
    main()
