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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench
import reference_rounds
import servers
from servers import WrkResult

CEILING = "ceiling (bare granian)"
LOADS = {"one": http_bench.ONE_COOKIE, "distinct": http_bench.DISTINCT_BROWSERS}


def run(args: argparse.Namespace, work: Path, workers: int) -> None:
    with contextlib.ExitStack() as stack:
        ports: dict[str, int] = {"nginx": stack.enter_context(servers.nginx(work, "auto"))}
        roots = {"nginx": servers.nginx_master(work, "auto")}
        ports[CEILING], roots[CEILING] = stack.enter_context(servers.granian_bare(work, workers))
        for checks in args.minimal:
            name = "minimal" if checks == "thread" else "minimal (no checks)"
            env = {"MINIMAL_CHECKS": checks}
            served = servers.minimal_app(work / name, "minimal_cookie_match", workers, env)
            ports[name], roots[name] = stack.enter_context(served)
            url = f"http://127.0.0.1:{ports[name]}{http_bench.COOKIE_MATCH_PATH}"
            answer = http_bench.fetch(url, cookie=f"cm_id={http_bench.BUYER_UID}; lang=en")
            print(f"   {name} preflight: {answer[0]} {answer[1]}", flush=True)
        for n, (name, extra) in enumerate(reference_rounds.trees(args.base).items()):
            directory = work / f"exchange-{n}"
            url = f"sqlite:///{directory}/store.db"
            service = stack.enter_context(
                servers.cookiematch(directory, url, workers=workers, extra_path=extra)
            )
            print(f"   {name} preflight: {http_bench.preflight(service)}", flush=True)
            ports[name], roots[name] = service.port, service.proc.pid
        for load in args.only:
            endpoint = LOADS[load]

            def once(name: str, number: int, endpoint: http_bench.Endpoint = endpoint) -> WrkResult:
                return servers.wrk(
                    ports[name],
                    http_bench.LUA / endpoint.script,
                    duration=args.duration,
                    connections=args.connections,
                    args=endpoint.args(number, work),
                )

            measured = reference_rounds.alternate(roots, args.rounds, once)
            plural = "s" if workers > 1 else ""
            reference_rounds.report(
                f"{endpoint.name}, {workers} worker{plural}", measured, ["nginx", CEILING]
            )


def main() -> None:
    parser = reference_rounds.arguments(__doc__.splitlines()[0])
    parser.add_argument("--only", type=http_bench.csv_list(str), default=list(LOADS))
    parser.add_argument(
        "--minimal",
        type=http_bench.csv_list(str),
        default=["thread", "none"],
        help="the minimal app's variants: thread (its checks applied), none (no checks)",
    )
    reference_rounds.each_worker_count(parser.parse_args(), "cookie-match-reference-", run)


if __name__ == "__main__":
    main()
