"""Online trait writes when the analytics engine owns the traits, beside the key-value store's
writes they replace, in one run.

    .venv/bin/python bench/dmp_staging_bench.py [--batches 200] [--profiles 1000]

An HTTP batch (or a pulled page) ends in one ``TraitStore.apply`` of its profiles' merged
updates (``--profiles`` per batch: two attributes and an event each). Timed, one after the
other on the same machine: ``--batches`` of them written to the store's ``t`` maps (SQLite on
disk, ``Durability.ACK``: durable when answered, as the server writes them), then the same
batches staged for the engine (``dmp/traits/staging.py``: a file per batch, fsync'd, renamed
in: durable when answered). Then the engine's job applying what was staged
(``dmp/analytics/staged.py``) into a DuckDB file that holds every profile already, updates/s,
two ways from copies of the same files and engine: the per-profile merge (the rows held of each
browser read, merged in Python, the profiles replaced: what Spark runs) and the merge in SQL
(``staged_sql.py``: DuckDB's); both engines then hold the same rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.rows import AttributeRow, ProfileRows
from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.analytics.staged import apply_staged, merge_in_python
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.dmp.traits.staging import TraitStaging
from cookiematch.dmp.traits.writes import ProfileUpdate, TraitStore
from cookiematch.storage import Durability, connect_store


def batches(count: int, profiles: int, now: float) -> list[dict[str, ProfileUpdate]]:
    found = []
    for b in range(count):
        batch = {}
        for i in range(profiles):
            update = ProfileUpdate("crm")
            update.merge({"tier": f"t{b % 4}", "n": b}, (), {("buy", int(now) - i)})
            batch[f"u{(b * profiles + i) % (count * profiles // 2):08d}"] = update
        found.append(batch)
    return found


class PerProfile(DuckDBEngine):
    """DuckDB applying staged updates through its profiles, merged in Python."""

    def merge_staged(self, files: Sequence[bytes], catalog: TraitCatalog) -> None:
        merge_in_python(self, files, catalog)


async def applying(
    engine: DuckDBEngine, staging: TraitStaging, catalog: TraitCatalog
) -> tuple[int, float]:
    """Updates applied from ``staging`` into ``engine``, and the seconds it took."""
    started = time.perf_counter()
    applied = await apply_staged(staging, engine, catalog)
    seconds = time.perf_counter() - started
    return applied, seconds


async def timed(store: TraitStore, work: list[dict[str, ProfileUpdate]]) -> list[float]:
    seconds = []
    for batch in work:
        started = time.perf_counter()
        await store.apply(batch)
        seconds.append(time.perf_counter() - started)
    return seconds


def summary(name: str, seconds: list[float], profiles: int) -> str:
    total = sum(seconds)
    p50 = statistics.median(seconds) * 1000
    p99 = sorted(seconds)[int(len(seconds) * 0.99) - 1] * 1000
    rate = len(seconds) * profiles / total
    return f"{name:<28} {p50:>8.2f} ms {p99:>8.2f} ms {rate:>12,.0f} profiles/s"


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="dmp-staging-"))
    now = time.time()
    work = batches(args.batches, args.profiles, now)
    catalog = TraitCatalog()
    store = await connect_store(f"sqlite://{workdir / 'kv.db'}", durability=Durability.ACK)
    written = await timed(TraitStore(store, catalog, clock=time.time), work)
    await store.close()
    staging = TraitStaging(workdir / "staging")
    staged = await timed(TraitStore(store, catalog, clock=time.time, staging=staging), work)
    uids = sorted({uid for batch in work for uid in batch})
    seeded = DuckDBEngine(AnalyticsSettings(str(workdir / "seed.duckdb")))
    seeded.append(
        [ProfileRows(uid, None, {"seed": AttributeRow("x", now, now + 86_400)}) for uid in uids]
    )
    seeded.close()
    copy = TraitStaging(workdir / "staging-copy")
    shutil.copytree(staging.directory, copy.directory)
    results = {}
    for name, kind, source in (("python", PerProfile, copy), ("sql", DuckDBEngine, staging)):
        path = workdir / f"{name}.duckdb"
        shutil.copy(workdir / "seed.duckdb", path)
        engine = kind(AnalyticsSettings(str(path)))
        results[name] = await applying(engine, source, catalog)
        engine.close()
    same = [DuckDBEngine(AnalyticsSettings(str(workdir / f"{n}.duckdb"))) for n in results]
    held = [engine.profiles(uids) for engine in same]
    for engine in same:
        engine.close()
    print(f"{args.batches} batches of {args.profiles} profiles; load {os.getloadavg()[0]:.1f}")
    print(f"{'':<28} {'p50':>11} {'p99':>11} {'':>12}")
    print(summary("store t maps (SQLite, ack)", written, args.profiles))
    print(summary("staged (file, fsync)", staged, args.profiles))
    print(f"store / staged (total time): {sum(written) / sum(staged):.2f}")
    for name, (applied, seconds) in results.items():
        print(
            f"apply, {name + ' merge':<12} {applied:,} staged updates to {len(uids):,} profiles "
            f"in {seconds:.2f} s ({applied / seconds:,.0f}/s)"
        )
    print(f"sql / python (updates/s): {results['python'][1] / results['sql'][1]:.1f}")
    print(f"same rows held: {'yes' if held[0] == held[1] else 'NO'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--profiles", type=int, default=1000)
    asyncio.run(main(parser.parse_args()))
