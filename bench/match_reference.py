"""The buyer's ``GET /match`` beside what is reachable: nginx's static 302, the minimal standalone
RSGI app doing the same real work with a durable SQLite write (``bench/minimal_match.py``, in
its three shapes), and cookiematch's buyer on SQLite (``durability = "ack"``), under the same
wrk load (``lua/unique.lua``: a new gid and browser per request, as ``http_bench.py`` sends
them), rounds alternated in one run.

    flock /tmp/bench.lock .venv/bin/python bench/match_reference.py [--workers 1,2]
        [--rounds 3] [--duration 3] [--base /path/to/other/src] [--minimal threads,loop]

``--base``: a second cookiematch buyer from another tree (e.g. main's ``src``) in the same
rounds, for a before/after measured side by side. Prints each server's median req/s, p50/p99
and its ratio to nginx (min-max over the rounds).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench
import servers
from servers import VENV_BIN, WrkResult

BENCH = Path(__file__).resolve().parent
MATCH = ["/match?google_gid=@N@&google_cver=1", "buyer_uid=@ID@"]


@contextlib.contextmanager
def minimal(directory: Path, workers: int, mode: str) -> Iterator[int]:
    """granian serving ``bench/minimal_match.py`` over a new database; yields its port."""
    directory.mkdir(parents=True, exist_ok=True)
    port = servers.free_port()
    args = [str(VENV_BIN / "granian"), "--interface", "rsgi", "--no-ws", "--host", "127.0.0.1"]
    args += ["--port", str(port), "--workers", str(workers), "--loop", "uvloop"]
    args += ["minimal_match:app"]
    db = directory / "store.db"
    os.environ.update(MINIMAL_DB=str(db), MINIMAL_MODE=mode, PYTHONPATH=str(BENCH))
    with servers._serving(args, directory, port):
        yield port


def run(args: argparse.Namespace, work: Path, workers: int) -> None:
    with contextlib.ExitStack() as stack:
        ports: dict[str, int] = {"nginx": stack.enter_context(servers.nginx(work, "auto"))}
        trees = {"cookiematch": []} | ({"cookiematch (base)": [args.base]} if args.base else {})
        for name, extra in trees.items():
            directory = work / f"{name.replace(' ', '_')}-{workers}"
            directory.mkdir()
            service = stack.enter_context(
                servers.cookiematch(
                    directory, f"sqlite:///{directory}/store.db", role="buyer",
                    workers=workers, extra_path=extra,
                )
            )  # fmt: skip
            ports[name] = service.port
        for mode in args.minimal:
            ports[f"minimal ({mode})"] = stack.enter_context(
                minimal(work / f"minimal-{mode}-{workers}", workers, mode)
            )
        results: dict[str, list[WrkResult]] = {name: [] for name in ports}
        for number in range(1, args.rounds + 1):
            for name, port in ports.items():
                results[name].append(
                    servers.wrk(
                        port,
                        http_bench.LUA / "unique.lua",
                        duration=args.duration,
                        connections=args.connections,
                        args=[str(number), *MATCH],
                    )
                )
    nginx = results["nginx"]
    load = os.getloadavg()
    print(f"\n== sqlite (ack), {workers} worker{'s' if workers > 1 else ''}, load {load[0]:.2f}")
    print(f"{'server':<22} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7}  ratio to nginx (min-max)")
    for name, runs in results.items():
        ratios = [r.rps / n.rps for r, n in zip(runs, nginx, strict=True)]
        rps = statistics.median(r.rps for r in runs)
        ratio = rps / statistics.median(n.rps for n in nginx)
        print(
            f"{name:<22} {rps:>9,.0f} {statistics.median(r.p50_ms for r in runs):>7.2f}"
            f" {statistics.median(r.p99_ms for r in runs):>7.2f}  {ratio:.3f}"
            f" ({min(ratios):.2f}-{max(ratios):.2f})",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=http_bench.csv_list(int), default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--base", default=None, help="another tree's src, served beside ours")
    parser.add_argument(
        "--minimal", type=http_bench.csv_list(str), default=["threads", "loop_read", "loop"]
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="match-reference-") as tmp:
        for workers in args.workers:
            work = Path(tmp) / f"w{workers}"
            work.mkdir()
            run(args, work, workers)


if __name__ == "__main__":
    main()
