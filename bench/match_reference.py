"""The buyer's ``GET /match`` (or the DMP's partner callback) beside what is reachable: nginx's
static 302, the minimal standalone RSGI app doing the same real work with durable SQLite writes
(``bench/minimal_match.py``, in its three shapes; ``bench/minimal_callback.py``), and
cookiematch's buyer (or DMP) on SQLite (``durability = "ack"``), under the same wrk load
(``lua/unique.lua``: a new gid or partner uid and browser per request, as ``http_bench.py``
sends them), rounds alternated in one run.

    flock /tmp/bench.lock .venv/bin/python bench/match_reference.py [--workers 1,2]
        [--rounds 3] [--duration 3] [--base /path/to/other/src] [--minimal threads,loop]
        [--endpoint match|callback]

``--base``: a second cookiematch buyer from another tree (e.g. main's ``src``) in the same
rounds, for a before/after measured side by side. Prints each server's median req/s, p50/p99
and its ratio to nginx (min-max over the rounds).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench
import reference_rounds
import servers
from servers import WrkResult

MATCH = ["/match?google_gid=@N@&google_cver=1", "buyer_uid=@ID@"]
CALLBACK = ["/callback/analytics?c=shop&uid=@N@", "dmp_id=@ID@"]
# endpoint: cookiematch's role, the wrk templates, the minimal app's module and its shapes
ENDPOINTS = {
    "match": ("buyer", MATCH, "minimal_match", ["threads", "loop_read", "loop"]),
    "callback": ("dmp", CALLBACK, "minimal_callback", ["threads"]),
}


def minimal(
    directory: Path, workers: int, mode: str, module: str = "minimal_match"
) -> contextlib.AbstractContextManager[tuple[int, int]]:
    """granian serving ``bench/<module>.py`` over a new database; yields its port and pid."""
    env = {"MINIMAL_DB": str(directory / "store.db"), "MINIMAL_MODE": mode}
    return servers.minimal_app(directory, module, workers, env)


def run(args: argparse.Namespace, work: Path, workers: int) -> None:
    role, templates, module, _ = ENDPOINTS[args.endpoint]
    with contextlib.ExitStack() as stack:
        ports: dict[str, int] = {"nginx": stack.enter_context(servers.nginx(work, "auto"))}
        roots = {"nginx": servers.nginx_master(work, "auto")}
        for name, extra in reference_rounds.trees(args.base).items():
            directory = work / f"{name.replace(' ', '_')}-{workers}"
            directory.mkdir()
            service = stack.enter_context(
                servers.cookiematch(
                    directory, f"sqlite:///{directory}/store.db", role=role,
                    workers=workers, extra_path=extra,
                )
            )  # fmt: skip
            ports[name], roots[name] = service.port, service.proc.pid
        for mode in args.minimal:
            name = f"minimal ({mode})"
            ports[name], roots[name] = stack.enter_context(
                minimal(work / f"minimal-{mode}-{workers}", workers, mode, module)
            )

        def once(name: str, number: int) -> WrkResult:
            return servers.wrk(
                ports[name],
                http_bench.LUA / "unique.lua",
                duration=args.duration,
                connections=args.connections,
                args=[str(number), *templates],
            )

        measured = reference_rounds.alternate(roots, args.rounds, once, verbose=False)
    load = os.getloadavg()
    plural = "s" if workers > 1 else ""
    title = f"{args.endpoint}, sqlite (ack), {workers} worker{plural}, load {load[0]:.2f}"
    reference_rounds.report(title, measured, ["nginx"])


def main() -> None:
    parser = reference_rounds.arguments(__doc__.splitlines()[0])
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="match")
    parser.add_argument(
        "--minimal",
        type=http_bench.csv_list(str),
        default=None,
        help="the minimal app's shapes (default: all of the endpoint's)",
    )
    args = parser.parse_args()
    if args.minimal is None:
        args.minimal = ENDPOINTS[args.endpoint][3]
    reference_rounds.each_worker_count(args, "match-reference-", run)


if __name__ == "__main__":
    main()
