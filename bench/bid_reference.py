"""``POST /bid`` beside what is reachable: nginx's static 302, the minimal standalone RSGI app
doing the same real work (``bench/minimal_bid.py``: on SQLite reading on the loop and through a
reader thread, on Redis through a minimal pipelining client), and cookiematch's buyer, under
the same wrk load, rounds alternated in one run.

    flock /tmp/bench.lock .venv/bin/python bench/bid_reference.py [--workers 1,2]
        [--store sqlite|redis] [--rounds 3] [--duration 3] [--base /path/to/other/src]

``--base``: another cookiematch buyer from another tree (e.g. main's ``src``) in the same
rounds, for a before/after measured side by side (repeatable: one buyer per tree). The
minimal app reads the store the buyer wrote (its preflight matches ``KNOWN_GID``): the SQLite
file, or the buyer's Redis database.
Prints each server's median req/s, p50/p99, its ratio to nginx (min-max over the rounds) and
the CPU its processes used per request (/proc, user + system, median over the rounds).
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


def minimal(
    directory: Path, db: str, workers: int, read: str
) -> contextlib.AbstractContextManager[tuple[int, int]]:
    """granian serving ``bench/minimal_bid.py`` over ``db`` (a SQLite file, or for
    ``read="redis"`` a Redis ``host:port/db``); yields its port and pid."""
    store = {"MINIMAL_REDIS" if read == "redis" else "MINIMAL_DB": db}
    return servers.minimal_app(directory, "minimal_bid", workers, {**store, "MINIMAL_READ": read})


def run(args: argparse.Namespace, work: Path, workers: int) -> None:
    body = http_bench.bid_request_body(work)
    redis = servers.redis_server(work) if args.store == "redis" else contextlib.nullcontext(None)
    with contextlib.ExitStack() as stack:
        redis_port = stack.enter_context(redis)
        ports: dict[str, int] = {"nginx": stack.enter_context(servers.nginx(work, "auto"))}
        nginx_pid = servers.nginx_master(work, "auto")
        roots: dict[str, int] = {"nginx": nginx_pid}
        for db, (name, extra) in enumerate(reference_rounds.trees(args.base).items(), start=1):
            directory = work / f"{name.replace(' ', '_')}-{workers}"
            directory.mkdir()
            (directory / "bid-request.json").write_bytes(body.read_bytes())
            url = http_bench.store_url_for(args.store, directory, redis_port, db)
            service = stack.enter_context(
                servers.cookiematch(directory, url, role="buyer", workers=workers, extra_path=extra)
            )
            print(f"   {name} preflight: {http_bench.preflight(service)}", flush=True)
            ports[name] = service.port
            roots[name] = service.proc.pid
        if args.store == "sqlite":
            db = str(work / f"cookiematch-{workers}" / "store.db")
            reads = args.minimal or ["loop", "thread"]
        else:  # the first buyer's database (``store_url_for``: db 1)
            db, reads = f"127.0.0.1:{redis_port}/1", args.minimal or ["redis"]
        for read in (r for r in reads if r != "none"):
            name = f"minimal ({read})"
            ports[name], roots[name] = stack.enter_context(
                minimal(work / f"minimal-{read}-{workers}", db, workers, read)
            )
            status, answer = http_bench.fetch(
                f"http://127.0.0.1:{ports[name]}/bid", body=body.read_bytes()
            )
            print(f"   {name} preflight: {status} {answer[:60]}", flush=True)

        def once(name: str, number: int) -> WrkResult:
            return servers.wrk(
                ports[name],
                http_bench.LUA / "bid.lua",
                duration=args.duration,
                connections=args.connections,
                env={"BENCH_BODY": str(body)},
            )

        measured = reference_rounds.alternate(roots, args.rounds, once, verbose=False)
    plural = "s" if workers > 1 else ""
    reference_rounds.report(f"{args.store}, {workers} worker{plural}", measured, ["nginx"])


def main() -> None:
    parser = reference_rounds.arguments(__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite", choices=("sqlite", "redis"))
    parser.add_argument(
        "--minimal",
        type=http_bench.csv_list(str),
        default=None,
        help="the minimal app's variants to serve: loop,thread,bare (sqlite; default "
        "loop,thread), redis (redis; the default there), or none",
    )
    reference_rounds.each_worker_count(parser.parse_args(), "bid-reference-", run)


if __name__ == "__main__":
    main()
