"""Rounds alternated over servers under the same wrk load, and their table: what the reference
benchmarks (``bid_reference.py``, ``match_reference.py``, ``cookie_match_reference.py``) share,
with their common options and the trees they serve.

Each round runs wrk once against every server in turn; the CPU each server's processes (the
pid given and its descendants) used during its run is read from ``/proc``. The table gives
each server's median req/s, p50 and p99, the worst max, the median CPU a request, and its
ratio to every reference named (median, min-max over the rounds).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import http_bench
import servers
from servers import WrkResult


def arguments(description: str) -> argparse.ArgumentParser:
    """A parser with the options every reference benchmark takes: ``--workers``, ``--rounds``,
    ``--duration``, ``--connections`` and ``--base`` (repeatable)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workers", type=http_bench.csv_list(int), default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--base", action="append", help="another tree's src, served beside ours (repeatable)"
    )
    return parser


def trees(bases: Sequence[str] | None) -> dict[str, list[str]]:
    """The cookiematch servers to start, by name: this tree's, then one per ``--base``
    (the extra path it is served with)."""
    named: dict[str, list[str]] = {"cookiematch": []}
    listed = list(bases or ())
    for number, base in enumerate(listed, start=1):
        name = "cookiematch (base)" if len(listed) == 1 else f"cookiematch (base {number})"
        named[name] = [base]
    return named


def each_worker_count(
    args: argparse.Namespace, prefix: str, run: Callable[[argparse.Namespace, Path, int], None]
) -> None:
    """``run(args, work, workers)`` for each of ``args.workers``, each in a directory of its
    own under one temporary directory."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        for workers in args.workers:
            work = Path(tmp) / f"w{workers}"
            work.mkdir()
            run(args, work, workers)


@dataclass
class Measured:
    """Every round's result and CPU µs a request, by server."""

    results: dict[str, list[WrkResult]] = field(default_factory=dict)
    cpu_us: dict[str, list[float]] = field(default_factory=dict)


def alternate(
    pids: dict[str, int], rounds: int, run: Callable[[str, int], WrkResult], *, verbose: bool = True
) -> Measured:
    """``rounds`` rounds of ``run(name, round)`` for every server of ``pids`` (name → the pid
    whose tree serves it), alternated; each run's line printed when ``verbose``."""
    measured = Measured({name: [] for name in pids}, {name: [] for name in pids})
    for number in range(1, rounds + 1):
        for name, pid in pids.items():
            tree = [pid, *servers.descendants(pid)]
            before = servers.cpu_seconds(tree)
            result = run(name, number)
            used = servers.cpu_seconds(tree) - before
            measured.results[name].append(result)
            measured.cpu_us[name].append(used / max(result.requests, 1) * 1e6)
            if verbose:
                print(
                    f"   round {number} {name:<24} {result.rps:>9,.0f} req/s"
                    f" p99 {result.p99_ms:6.2f} max {result.max_ms:6.1f} ms",
                    flush=True,
                )
    return measured


def report(title: str, measured: Measured, references: Sequence[str]) -> None:
    """The table of ``measured``: each server against each of ``references``."""
    results = measured.results
    print(f"\n== {title}")
    print(
        f"{'server':<24} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'CPU µs/req':>10}"
        + "".join(f"  to {ref} (min-max)" for ref in references)
    )
    for name, runs in results.items():
        rps = statistics.median(r.rps for r in runs)
        line = (
            f"{name:<24} {rps:>9,.0f} {statistics.median(r.p50_ms for r in runs):>7.2f}"
            f" {statistics.median(r.p99_ms for r in runs):>7.2f}"
            f" {max(r.max_ms for r in runs):>7.1f}"
            f" {statistics.median(measured.cpu_us[name]):>10.1f}"
        )
        for ref in references:
            ratios = [r.rps / f.rps for r, f in zip(runs, results[ref], strict=True)]
            line += f"  {statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f})"
        bad = sum(r.non_3xx + r.socket_errors for r in runs)
        print(line + (f"  non-2xx/3xx or errors: {bad}" if bad else ""), flush=True)
