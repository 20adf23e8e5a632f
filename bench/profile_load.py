"""Profile a server worker under wrk load with py-spy: where the time of an endpoint goes.

    .venv/bin/python bench/profile_load.py [--seconds 8] [--store sqlite|redis] [--out DIR]
        [--endpoint cookie_match --endpoint hosted_match] [--native] [--gil]

Starts ``cookiematch serve`` for each endpoint's role (1 worker; the exchange's
``cookie_match`` and ``hosted_match``, the buyer's ``buyer_match``, the DMP's
``dmp_callback``, the last two sent as ``http_bench.py`` sends them, and the buyer's ``bid``:
``http_bench.py``'s bid request, its gid matched first), and for each records the
worker with ``py-spy record --threads --format raw`` while wrk drives it, then prints the
summary of ``bench/profile_summary.py`` (buckets: adapter, parse, crypto, render, store,
event loop, ...). Needs py-spy (``pip install py-spy``; the ``dev`` extra has it) and the
right to ptrace the worker (root, or ptrace_scope 0). Sampling slows the worker down; the
shares, not the rates, are the result.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench
import profile_summary
import servers

SCRIPTS = {
    "cookie_match": ("exchange", "cookie_match.lua", []),
    "cookie_match_distinct": (
        "exchange",
        "unique.lua",
        ["1", "/pixel?google_nid=ad_network_xyz&google_cm&p1=v1&p2=v2", "cm_id=@ID@; lang=en"],
    ),
    "hosted_match": (
        "exchange",
        "unique.lua",
        ["1", "/pixel?google_nid=cookie-monster&google_cm&google_hm=@N@", "cm_id=@ID@"],
    ),
    "buyer_match": (
        "buyer",
        "unique.lua",
        ["1", "/match?google_gid=@N@&google_cver=1", "buyer_uid=@ID@"],
    ),
    "dmp_callback": (
        "dmp",
        "unique.lua",
        ["1", "/callback/analytics?c=shop&uid=@N@", "dmp_id=@ID@"],
    ),
    "bid": ("buyer", "bid.lua", []),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--store", default="sqlite", choices=("sqlite", "redis"))
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--endpoint", choices=sorted(SCRIPTS), action="append")
    parser.add_argument("--native", action="store_true", help="py-spy --native")
    parser.add_argument("--gil", action="store_true", help="py-spy --gil")
    parser.add_argument("--out", type=Path, default=servers.ROOT / "var" / "bench" / "profiles")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="cookiematch-profile-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        if args.store == "redis":
            url = f"redis://127.0.0.1:{stack.enter_context(servers.redis_server(work))}/0"
        else:
            url = f"sqlite:///{work}/store.db"
        for endpoint in args.endpoint or sorted(SCRIPTS):
            role, script, script_args = SCRIPTS[endpoint]
            directory = work / f"server-{endpoint}"
            directory.mkdir()
            http_bench.bid_request_body(directory)
            with servers.cookiematch(directory, url, role=role) as service:
                http_bench.preflight(service)  # the buyer's bid finds its gid matched
                profile(service, endpoint, script, script_args, args)


def profile(
    service: servers.Service,
    endpoint: str,
    script: str,
    script_args: list[str],
    args: argparse.Namespace,
) -> None:
    """Record ``service``'s worker under wrk and print the summary."""
    raw = args.out / f"{endpoint}-{args.store}.txt"
    extra = [flag for flag, on in (("--native", args.native), ("--gil", args.gil)) if on]
    spy = subprocess.Popen(
        [str(servers.VENV_BIN / "py-spy"), "record", "-p", str(service.worker_pids()[0]),
         "-d", f"{args.seconds:g}", "-r", str(args.rate), "--threads", "--nonblocking",
         "-f", "raw", "-o", str(raw), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    result = servers.wrk(
        service.port,
        servers.ROOT / "bench" / "lua" / script,
        duration=args.seconds,
        connections=args.connections,
        args=script_args,
        env={"BENCH_BODY": str(service.config.parent / "bid-request.json")},
    )
    spy.wait()
    print(f"\n### {endpoint} on {args.store}, under py-spy: {result.rps:,.0f} req/s")
    print(profile_summary.summarise(raw, 15))


if __name__ == "__main__":
    main()
