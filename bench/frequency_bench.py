"""The frequency-capping checks under a steady stream of new browsers: how long the event loop
stalls while they are applied, and how many are applied.

    .venv/bin/python bench/frequency_bench.py [--store sqlite|redis] [--rate 35000]
        [--seconds 6] [--loop uvloop] [--keys random|sequential] [--checks-in worker|process]

One buyer monitor (``exchange/monitoring.py``) as a worker runs it, on a real store (SQLite
on disk, or a private ``redis-server``), records ``--rate`` match tags per second, each for a
browser never seen before (the HTTP benchmark's ``--distinct-browsers`` row, without the
HTTP), in steps of a millisecond, while a probe on the same loop measures how late each of
its 1 ms sleeps wakes up. Reports the probe's lateness (p50, p99, max) and the checks
recorded, applied and dropped. The lateness is what a request waiting on the loop sees added
to its latency.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers

from cookiematch.exchange.check_process import ChecksProcess
from cookiematch.exchange.model import ExchangeSettings
from cookiematch.exchange.monitoring import BuyerMonitor, Count
from cookiematch.storage import Durability, open_store
from cookiematch.web.heap import settle_heap

PROBE_SECONDS = 0.001


async def probe(until: float, lateness: list[float]) -> None:
    clock = time.perf_counter  # (uvloop's loop.time() counts whole milliseconds)
    while clock() < until:
        start = clock()
        await asyncio.sleep(PROBE_SECONDS)
        lateness.append(clock() - start - PROBE_SECONDS)


async def traffic(monitor: BuyerMonitor, rate: float, until: float, sequential: bool) -> int:
    start, sent = time.perf_counter(), 0
    base = int.from_bytes(os.urandom(8), "big") << 64
    while (now := time.perf_counter()) < until:
        due = int((now - start) * rate)
        for n in range(sent, due):
            browser = (base + n).to_bytes(16, "big") if sequential else os.urandom(16)
            monitor.gid_issued("ad_network_xyz", browser)
        sent = due
        await asyncio.sleep(PROBE_SECONDS)
    return sent


async def run(
    url: str,
    rate: float,
    seconds: float,
    sequential: bool,
    server_pid: int | None = None,
    in_process: bool = False,
) -> dict[str, float]:
    store = open_store(url)
    await store.start()
    child = None
    if in_process:  # as a served worker applies them (exchange/check_process.py)
        child = ChecksProcess(url, Durability.ACK, ExchangeSettings(), deadline=5.0)
        await child.prepare()  # started, its store opened: not in its CPU below
    counted: dict[Count, int] = {}

    def on_count(nid: str, what: Count, n: int) -> None:
        counted[what] = counted.get(what, 0) + n

    monitor = BuyerMonitor(
        store,
        ExchangeSettings(),
        clock=time.time,
        worker_id="w1",
        on_count=on_count,
        checks_process=child,
    )
    await settle_heap()  # as a served worker does after start-up
    pauses: list[tuple[float, int]] = []
    started: list[float] = []

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses.append((time.perf_counter() - started.pop(), info["generation"]))

    gc.callbacks.append(timed)
    consumer = asyncio.get_running_loop().create_task(monitor.consume())
    lateness: list[float] = []
    server = [server_pid] if server_pid else []
    child_pids = [child.pid] if child and child.pid else []
    cpu = time.process_time()
    server_cpu, child_cpu = servers.cpu_seconds(server), servers.cpu_seconds(child_pids)
    quiet: list[float] = []  # the probe alone first: what this machine adds by itself
    await probe(time.perf_counter() + min(seconds, 2.0), quiet)
    until = time.perf_counter() + seconds
    sent, _ = await asyncio.gather(
        traffic(monitor, rate, until, sequential), probe(until, lateness)
    )
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)
    await monitor.drain()
    cpu = time.process_time() - cpu
    server_cpu = servers.cpu_seconds(server) - server_cpu
    child_cpu = servers.cpu_seconds(child_pids) - child_cpu
    if child is not None:
        await child.close()
    gc.callbacks.remove(timed)
    await store.close()
    lateness.sort()
    quiet.sort()
    return {
        "quiet_p99_ms": 1000 * quiet[int(len(quiet) * 0.99)],
        "quiet_max_ms": 1000 * quiet[-1],
        "recorded": sent,
        "dropped": counted.get(Count.CHECKS_DROPPED, 0),
        "lateness_p50_ms": 1000 * statistics.median(lateness),
        "lateness_p99_ms": 1000 * lateness[int(len(lateness) * 0.99)],
        "lateness_max_ms": 1000 * lateness[-1],
        "cpu_us_per_check": 1e6 * cpu / max(sent, 1),
        "server_cpu_us_per_check": 1e6 * server_cpu / max(sent, 1),
        "child_cpu_us_per_check": 1e6 * child_cpu / max(sent, 1),
        "collections": len(pauses),
        "collection_max_ms": 1000 * max((p for p, _ in pauses), default=0.0),
        "collection_max_generation": max(pauses)[1] if pauses else -1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite", choices=("sqlite", "redis"))
    parser.add_argument("--rate", type=float, default=35_000.0, help="new browsers per second")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--loop", default="uvloop", choices=("asyncio", "uvloop"))
    parser.add_argument(
        "--keys",
        default="random",
        choices=("random", "sequential"),
        help="random browser IDs (real traffic: each new record lands on its own page), or "
        "consecutive ones (as the HTTP benchmark's unique.lua makes them: records land "
        "side by side)",
    )
    parser.add_argument(
        "--checks-in",
        default="worker",
        choices=("worker", "process"),
        help="apply the checks in this process, or in a child process as a served worker "
        "does (exchange/check_process.py)",
    )
    args = parser.parse_args()
    sequential = args.keys == "sequential"
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    with tempfile.TemporaryDirectory() as work:
        if args.store == "sqlite":
            result = asyncio.run(
                run(
                    f"sqlite:///{work}/store.db",
                    args.rate,
                    args.seconds,
                    sequential,
                    in_process=args.checks_in == "process",
                )
            )
        else:
            with servers.redis_server(Path(work)) as port:
                pid = servers.redis_pid(port)
                result = asyncio.run(
                    run(
                        f"redis://127.0.0.1:{port}/0",
                        args.rate,
                        args.seconds,
                        sequential,
                        pid,
                        in_process=args.checks_in == "process",
                    )
                )
    print(
        f"{args.store}, {args.keys} keys: {result['recorded']:,.0f} checks recorded at "
        f"{args.rate:,.0f}/s, "
        f"{result['dropped']:,.0f} dropped; loop lateness p50 {result['lateness_p50_ms']:.2f} "
        f"p99 {result['lateness_p99_ms']:.2f} max {result['lateness_max_ms']:.2f} ms "
        f"(probe alone before: p99 {result['quiet_p99_ms']:.2f} max "
        f"{result['quiet_max_ms']:.2f} ms); "
        f"{result['cpu_us_per_check']:.1f} µs CPU per check"
        + (
            f" (redis-server: {result['server_cpu_us_per_check']:.1f} µs)"
            if args.store == "redis"
            else ""
        )
        + (
            f" (the checks process: {result['child_cpu_us_per_check']:.1f} µs)"
            if args.checks_in == "process"
            else ""
        )
        + f"; {result['collections']:.0f} "
        f"garbage collections, the longest {result['collection_max_ms']:.1f} ms "
        f"(generation {result['collection_max_generation']:.0f})"
    )


if __name__ == "__main__":
    main()
