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
from time import perf_counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cookiematch.web.counters import LabelledCounter, ResponseMeter, SharedMetrics

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
        counts: WorkerCounts[tuple[str, str]] = WorkerCounts(lambda key: (counter, key), metrics)
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
        results.update(match_tag(metrics, counter, meter, calls))
        metrics.close()
    return results


def match_tag(
    metrics: SharedMetrics, counter: LabelledCounter, meter: ResponseMeter, calls: int
) -> dict[str, float]:
    """A match tag's updates: 2 privacy decisions, 3 counters, the answer counted and timed;
    with the shared families, and with the per-process dicts and ``Counter`` before."""
    from collections import Counter

    from cookiematch.privacy.policy import Operation, Reason
    from cookiematch.web.counters import LabelledCounter, WorkerCounts

    decisions = LabelledCounter("bench_decisions", "d", ("operation", "reason"), metrics)
    shared_counts: WorkerCounts[tuple[Operation, Reason]] = WorkerCounts(
        lambda key: (decisions, (key[0].value, key[1].value)), metrics
    )
    first = (Operation.STORE_ID, Reason.NOT_REGULATED)
    second = (Operation.SYNC, Reason.NOT_REGULATED)

    def shared() -> None:
        started = perf_counter()
        shared_counts[first] += 1
        shared_counts[second] += 1
        counter.inc(("x", "redirect"))
        counter.inc(("x", "gid_issued"))
        counter.inc(("x", "bid"))
        meter.record("/pixel", 302, perf_counter() - started)

    counts: Counter[tuple[Operation, Reason]] = Counter()
    plain: dict[tuple[str, ...], float] = {}

    def inc(labels: tuple[str, ...]) -> None:
        plain[labels] = plain.get(labels, 0) + 1

    def before() -> None:
        counts[first] += 1
        counts[second] += 1
        inc(("x", "redirect"))
        inc(("x", "gid_issued"))
        inc(("x", "bid"))

    return {
        "a match tag's updates: shared": per_call_ns(shared, calls),
        "a match tag's updates: dicts (before)": per_call_ns(before, calls),
    }


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
