"""Two trees' in-process cost of one endpoint, measured at the same time: ``handler_bench`` for
each, both running at once, each pinned to its own core, the cores swapped every round.

    .venv/bin/python bench/pinned_ab.py --endpoint dmp_callback --rounds 10 A_SRC B_SRC
        [--stores REDIS_URL_A REDIS_URL_B]

On a machine whose speed drifts by 10-15 % between runs taken one after the other, two runs
side by side see the same drift: the difference between the trees is what is left (an A/A
run differed by 3 %). Prints, per tree, the medians of the CPU per request, of the loop
thread's share and of the wall-clock rate, and each round's CPU per request. Needs two cores
and ``taskset``; nothing else should run meanwhile. ``--stores`` gives each tree its own
Redis database (e.g. ``redis://127.0.0.1:6379/1`` and ``/2``) instead of a SQLite file each.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
_FIGURES = re.compile(
    r"\s([\d.]+) µs/req\s+loop\s+([\d.]+) µs/req.*?([\d,]+) req/s wall", re.DOTALL
)


def _start(src: str, core: int, store: str, args: argparse.Namespace) -> subprocess.Popen[str]:
    command = ["taskset", "-c", str(core), sys.executable, str(BENCH / "handler_bench.py")]
    command += ["--endpoint", args.endpoint, "--seconds", str(args.seconds), "--rounds", "1"]
    command += ["--loop", "uvloop", "--store", store]
    env = dict(os.environ, PYTHONPATH=src)
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)


def _figures(output: str) -> tuple[float, float, float]:
    found = _FIGURES.findall(output)
    if not found:
        raise SystemExit(f"no figures in handler_bench's output:\n{output}")
    total, loop, wall = found[-1]
    return float(total), float(loop), float(wall.replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="tree A's src directory")
    parser.add_argument("b", help="tree B's src directory")
    parser.add_argument("--endpoint", default="dmp_callback")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--stores", nargs=2, default=["sqlite", "sqlite"], metavar="URL")
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float, float]]] = {args.a: [], args.b: []}
    for number in range(args.rounds):
        cores = (0, 1) if number % 2 == 0 else (1, 0)
        running = [
            (src, _start(src, core, store, args))
            for src, core, store in zip(runs, cores, args.stores, strict=True)
        ]
        for src, process in running:
            output, _ = process.communicate()
            runs[src].append(_figures(output))
    for src, figures in runs.items():
        totals, loops, walls = zip(*figures, strict=True)
        print(
            f"{src}: {statistics.median(totals):.1f} µs/req, loop {statistics.median(loops):.1f}"
            f" µs/req, {statistics.median(walls):,.0f} req/s wall;"
            f" rounds {', '.join(f'{t:.1f}' for t in sorted(totals))}"
        )


if __name__ == "__main__":
    main()
