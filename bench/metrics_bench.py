"""Cost of one metric update on the hot path, per candidate: ns per call.

    python bench/metrics_bench.py [--calls 1000000]

Candidates: a per-process dict (the counters before they were shared), the shared-memory
slots of ``web/counters.py`` (counter inc, histogram observe, a ``WorkerCounts`` ``+= 1``),
and ``prometheus_client`` in its default and its multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``
set before it is imported, so that case runs in a child process).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable

LABELS = ("ad_network_xyz", "redirect")


def per_call_ns(call: Callable[[], None], calls: int) -> float:
    best = min(timeit.repeat(call, number=calls, repeat=5))
    return best / calls * 1e9


def ours(calls: int) -> dict[str, float]:
    from prometheus_client import CollectorRegistry

    from cookiematch.web.counters import (
        LabelledCounter,
        LabelledHistogram,
        ResponseMeter,
        SharedMetrics,
        WorkerCounts,
    )

    results: dict[str, float] = {}
    plain: dict[tuple[str, ...], float] = {}

    def dict_inc() -> None:
        plain[LABELS] = plain.get(LABELS, 0) + 1

    results["dict (per worker, before)"] = per_call_ns(dict_inc, calls)
    with tempfile.TemporaryDirectory() as directory:
        metrics = SharedMetrics(CollectorRegistry(), directory=directory)
        counter = LabelledCounter("bench_outcomes", "d", ("nid", "outcome"), metrics)
        histogram = LabelledHistogram("bench_seconds", "d", ("route",), metrics)
        counts: WorkerCounts[tuple[str, str]] = WorkerCounts(lambda key: (counter, key))
        results["slots: counter.inc"] = per_call_ns(lambda: counter.inc(LABELS), calls)
        results["slots: histogram.observe"] = per_call_ns(
            lambda: histogram.observe(("/pixel",), 0.0003), calls
        )

        meter = ResponseMeter(
            LabelledCounter("bench_responses", "d", ("route", "status"), metrics),
            histogram,
            metrics,
        )
        results["slots: ResponseMeter.record"] = per_call_ns(
            lambda: meter.record("/pixel", 302, 0.0003), calls
        )

        def tally() -> None:
            counts[LABELS] += 1

        results["slots: WorkerCounts += 1"] = per_call_ns(tally, calls)
        metrics.close()
    return results


def prometheus(calls: int) -> dict[str, float]:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    mode = "multiprocess" if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else "default"
    registry = CollectorRegistry()
    counter = Counter("bench_outcomes", "d", ("nid", "outcome"), registry=registry)
    histogram = Histogram("bench_seconds", "d", ("route",), registry=registry)
    child = counter.labels(*LABELS)
    return {
        f"prometheus_client {mode}: labels().inc": per_call_ns(
            lambda: counter.labels(*LABELS).inc(), calls
        ),
        f"prometheus_client {mode}: bound child inc": per_call_ns(child.inc, calls),
        f"prometheus_client {mode}: labels().observe": per_call_ns(
            lambda: histogram.labels("/pixel").observe(0.0003), calls
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--child", choices=("prometheus",), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        for name, ns in prometheus(args.calls).items():
            print(f"{name:48} {ns:8.0f} ns")
        return
    for name, ns in ours(args.calls).items():
        print(f"{name:48} {ns:8.0f} ns")
    for name, ns in prometheus(args.calls).items():
        print(f"{name:48} {ns:8.0f} ns")
    sys.stdout.flush()
    with tempfile.TemporaryDirectory() as directory:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
        command = [sys.executable, __file__, "--child", "prometheus", "--calls", str(args.calls)]
        subprocess.run(command, env=env, check=True)


if __name__ == "__main__":
    main()
