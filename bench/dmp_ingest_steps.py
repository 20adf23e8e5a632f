"""Where the time of ingestion in SQL goes: every statement of one run timed.

    flock /tmp/bench.lock .venv/bin/python bench/dmp_ingest_steps.py --records 5000000

The file and the seeded store of ``bench/dmp_ingest_bench.py`` (generated in --workdir if
missing), ingested once by ``dmp/analytics/ingest_sql.py`` in this process as that bench does
(the store seeded, then opened again). Prints the run's wall and process CPU seconds and peak
RSS, then each statement's wall and CPU seconds (summed over the chunks; the CPU of a step
counts every thread of the process, the staging thread's too while the sync map is exported),
and the highest RSS seen during each (sampled every 20 ms). The load average is printed with
the figures: on a shared machine, compare CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dmp_ingest_bench as bench

from cookiematch.dmp.analytics import ingest_sql
from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.settings import MEMORY_LIMIT_MB, AnalyticsSettings
from cookiematch.dmp.ingest import build_ingestor
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.dmp.traits.writes import TraitStore

EXPORT = "staging; the sync map's export (wall only)"
"""The step of the staging thread and the export beside it (its peak RSS is theirs)."""


class Steps:
    """Wall and CPU seconds per step; the highest RSS sampled while each ran."""

    def __init__(self) -> None:
        self.current = "start"
        self.times: dict[str, list[float]] = {}
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()

    def add(self, step: str, wall: float, cpu: float) -> None:
        spent = self.times.setdefault(step, [0.0, 0.0])
        spent[0] += wall
        spent[1] += cpu

    def sample(self) -> None:
        while not self._stop.wait(0.02):
            rss = rss_mib()
            if rss > self.peaks.get(self.current, 0.0):
                self.peaks[self.current] = rss

    def timed(self, step: str, call: Callable[[], Any]) -> Any:
        self.current = step
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return call()
        finally:
            self.add(step, time.perf_counter() - wall, time.process_time() - cpu)

    def stop(self) -> None:
        self._stop.set()


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def instrument(steps: Steps) -> None:
    """Every statement of a run, staging and the sync map's export timed."""
    run_statement = ingest_sql._run

    def timed_run(db: Any, sql: str, params: dict[str, Any]) -> Any:
        return steps.timed(" ".join(sql.split())[:72], lambda: run_statement(db, sql, params))

    ingest_sql._run = timed_run  # type: ignore[assignment]
    stage_path = ingest_sql.SqlIngest.stage_path
    export = getattr(ingest_sql.SqlIngest, "export_sync_map", None)
    if export is None:  # an older version of the module: its statements only
        return

    def timed_stage(self: ingest_sql.SqlIngest, path: Path, progress: Any = None) -> bool:
        wall = time.perf_counter()
        staged = stage_path(self, path, progress)
        steps.add("staging (a thread: wall only)", time.perf_counter() - wall, 0.0)
        return staged

    async def timed_export(self: ingest_sql.SqlIngest, store: Any, partner_id: str) -> None:
        steps.current = EXPORT
        wall = time.perf_counter()
        await export(self, store, partner_id)
        steps.add(EXPORT, time.perf_counter() - wall, 0.0)

    ingest_sql.SqlIngest.stage_path = timed_stage  # type: ignore[method-assign]
    ingest_sql.SqlIngest.export_sync_map = timed_export  # type: ignore[method-assign]
    steps.current = EXPORT


async def measure(args: argparse.Namespace, data: Path) -> None:
    steps = Steps()
    instrument(steps)
    ingest_sql.ENGINE_SHARE = args.engine_share
    db = args.workdir / "steps-sync.db"
    engine_path = args.workdir / "steps.duckdb"
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), engine_path, Path(f"{engine_path}.wal")):
        path.unlink(missing_ok=True)
    store, _ = await bench.seeded_store(f"sqlite://{db}", args)
    engine = DuckDBEngine(AnalyticsSettings(str(engine_path), memory_limit_mb=args.memory_mb))
    catalog = TraitCatalog()
    pending = build_ingestor(store, TraitStore(store, catalog, clock=time.time)).pending
    threading.Thread(target=steps.sample, daemon=True).start()
    wall, cpu = time.perf_counter(), time.process_time()
    report = await ingest_sql.ingest_files(
        engine.connection,
        store,
        pending,
        bench.PARTNER,
        [data],
        catalog,
        fmt="jsonl",
        memory_limit_mb=args.memory_mb,
    )
    steps.timed("checkpoint", lambda: engine.connection.execute("CHECKPOINT"))
    steps.current = "store closed"
    await store.close()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    steps.stop()
    profiles = engine.profile_count()
    engine.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(report.counts())
    print(
        f"total: {wall:.2f} s wall, {cpu:.2f} s CPU, {report.records / wall:,.0f} records/s, "
        f"peak RSS {peak:,.0f} MiB, {engine_path.stat().st_size / max(1, profiles):.1f} "
        f"bytes per profile; load average {load}"
    )
    print(f"{'wall s':>7} {'CPU s':>7} {'peak MiB':>8}  step")
    for step, (spent_wall, spent_cpu) in sorted(steps.times.items(), key=lambda kv: -kv[1][0]):
        if spent_wall >= args.at_least:
            print(f"{spent_wall:7.2f} {spent_cpu:7.2f} {steps.peaks.get(step, 0.0):8.0f}  {step}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--unsynced", type=float, default=0.02)
    parser.add_argument("--event-share", type=float, default=0.5)
    parser.add_argument("--memory-mb", type=int, default=MEMORY_LIMIT_MB)
    parser.add_argument("--engine-share", type=float, default=ingest_sql.ENGINE_SHARE)
    parser.add_argument("--at-least", type=float, default=0.2, help="steps shown: wall seconds")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dmp-bench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = args.workdir / f"records-{args.records}-{args.users}-{args.event_share}.jsonl"
    if not data.exists():
        bench.generate(data, args.records, args.users, args.event_share)
    asyncio.run(measure(args, data))


if __name__ == "__main__":
    main()
