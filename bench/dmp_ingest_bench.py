"""DMP ingestion throughput: a generated partner file into the embedded store and into Redis.

    .venv/bin/python bench/dmp_ingest_bench.py --records 5000000 --users 1000000

Generates (once, in --workdir, not committed) a JSON Lines file of ``--records`` records over
``--users`` partner uids, of which ``--unsynced`` are not in the match table (they go pending).
Each record carries two attributes; ``--event-share`` of them one event too. Per store: a
fresh store, the match table's reverse entries written in bulk (not timed; the store then opened
again, so that the seeding's memory is not counted as the ingestion's), then the file
ingested as ``cookiematch dmp ingest`` does (``duckdb``: in SQL on the analytics engine; the
key-value stores: readers -> Ingestor, a batch at a time, ``Durability.ASYNC``, as without an
engine), timed until the store is closed (everything flushed), with the peak RSS.
Then (unless ``--no-recompute``) two full recomputes of the two segments over what was
ingested, timed: every membership new, then nothing changed. Redis: a redis-server started
here on a free port, persistence off.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import random
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import msgspec

from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.dmp import keys
from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.ingest_sql import ingest_files
from cookiematch.dmp.analytics.settings import MEMORY_LIMIT_MB, AnalyticsSettings
from cookiematch.dmp.ingest import build_ingestor, bulk_gc
from cookiematch.dmp.ingest.pipeline import BATCH_RECORDS
from cookiematch.dmp.ingest.readers import read_batches
from cookiematch.dmp.matches import ReverseMatch
from cookiematch.dmp.segments import Segment, SegmentUpdater, StoredProfiles, parse_rule
from cookiematch.dmp.traits.reader import ProfileReader
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.dmp.traits.writes import TraitStore
from cookiematch.storage import Durability, Store, Write, connect_store
from cookiematch.storage import sqlite as sqlite_store

PARTNER = "crm"
TIERS = ["gold", "silver", "bronze", "none"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dmp_uid(i: int) -> str:
    return f"{random.Random(i).getrandbits(128):032x}"[:22]  # random, like real DMP uids


def generate(path: Path, records: int, users: int, event_share: float) -> None:
    rng = random.Random(7)
    now = int(time.time())
    encode = msgspec.json.encode
    with path.open("wb") as out:
        for _ in range(records):
            record: dict[str, object] = {
                "uid": f"p{rng.randrange(users)}",
                "attributes": {"tier": rng.choice(TIERS), "age": rng.randint(18, 80)},
            }
            if rng.random() < event_share:
                record["events"] = [
                    {"name": "purchase", "ts": now - rng.randrange(30 * SECONDS_PER_DAY)}
                ]
            out.write(encode(record) + b"\n")


async def seed_matches(store: Store, users: int, unsynced: float) -> None:
    synced = int(users * (1 - unsynced))
    chunk: list[Write] = []
    ttl = 390.0 * SECONDS_PER_DAY
    for i in range(synced):
        value = msgspec.json.encode(ReverseMatch(dmp_uid(i), time.time()))
        chunk.append(Write(keys.reverse_key(PARTNER, f"p{i}"), value, ttl))
        if len(chunk) >= 10_000:
            await store.write_many(chunk)
            chunk = []
    if chunk:
        await store.write_many(chunk)
    await store.get("flush")  # a read waits for the queued writes


async def seed(url: str, users: int, unsynced: float) -> float:
    store = await connect_store(url, durability=Durability.ASYNC)
    started = time.perf_counter()
    await seed_matches(store, users, unsynced)
    await store.close()
    return time.perf_counter() - started


SEGMENTS = [
    Segment("gold", parse_rule({"attribute": "tier", "value": "gold"})),
    Segment("buyers", parse_rule({"event": "purchase", "within_days": 30})),
]


async def seeded_store(url: str, args: argparse.Namespace) -> tuple[Store, float]:
    """The store seeded (``seed_matches``; the seconds it took), then opened again for the
    ingestion, as the command opens it: the seeding's page cache and mapped pages are not
    the ingestion's memory."""
    store = await connect_store(url, durability=Durability.ASYNC)
    started = time.perf_counter()
    await seed_matches(store, args.users, args.unsynced)
    seeded = time.perf_counter() - started
    await store.close()
    return await connect_store(url, durability=Durability.ASYNC), seeded


async def run(url: str, data: Path, args: argparse.Namespace) -> dict[str, float]:
    store, seeded = await seeded_store(url, args)
    ingestor = build_ingestor(store, TraitStore(store, TraitCatalog(), clock=time.time))
    started = time.perf_counter()
    with bulk_gc():  # as `cookiematch dmp ingest`
        batches = read_batches(data, "jsonl", args.batch)
        report = await ingestor.ingest(PARTNER, batches)
    queued = time.perf_counter() - started
    await store.close()
    seconds = time.perf_counter() - started
    counts = report.counts()
    return {"seconds": seconds, "queued": queued, "seed": seeded, **counts}


async def run_duckdb(url: str, data: Path, args: argparse.Namespace) -> dict[str, float]:
    """The same file ingested in SQL on the analytics engine (``dmp/analytics/ingest_sql.py``),
    in one process: the sync map exported from a key-value store seeded as above (SQLite),
    the pending records written back to it; timed until the engine's file is checkpointed and
    the store closed. Also the engine's file size per profile."""
    engine_path = args.workdir / "bench.duckdb"
    for suffix in ("", ".wal"):
        Path(f"{engine_path}{suffix}").unlink(missing_ok=True)
    store, seeded = await seeded_store(url, args)
    settings = AnalyticsSettings(str(engine_path), memory_limit_mb=args.duckdb_memory_mb)
    engine = DuckDBEngine(settings)
    catalog = TraitCatalog()
    pending = build_ingestor(store, TraitStore(store, catalog, clock=time.time)).pending
    started = time.perf_counter()
    report = await ingest_files(
        engine.connection,
        store,
        pending,
        PARTNER,
        [data],
        catalog,
        fmt="jsonl",
        memory_limit_mb=args.duckdb_memory_mb,
    )
    queued = time.perf_counter() - started
    engine.connection.execute("CHECKPOINT")
    await store.close()
    seconds = time.perf_counter() - started
    profiles = engine.profile_count()
    engine.close()
    size = engine_path.stat().st_size
    return {
        "seconds": seconds,
        "queued": queued,
        "seed": seeded,
        **report.counts(),
        "engine_profiles": profiles,
        "bytes_per_profile": size / max(1, profiles),
    }


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def peak_rss_mib() -> float:
    """The peak RSS of the largest process so far: this one or one of its ingest workers."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, workers) / 1024  # KiB on Linux


async def recompute(url: str) -> dict[str, float]:
    """Two full recomputes of SEGMENTS over the ingested profiles: every membership new, then
    nothing changed (as ``cookiematch dmp segments recompute``)."""
    store = await connect_store(url)
    try:
        reader = ProfileReader(store)
        source = StoredProfiles(store, reader.build, ProfileReader.SUFFIXES)
        updater = SegmentUpdater(store, SEGMENTS, source)
        first = await updater.recompute()
        second = await updater.recompute()
    finally:
        await store.close()
    members = sum(second.sizes.values())
    return {"recompute_s": first.seconds, "recompute_again_s": second.seconds, "members": members}


def measure(url: str, data: Path, args: argparse.Namespace) -> dict[str, float]:
    """One store, in a process of its own (``measure_apart``): its peak RSS is its own."""
    if args.sqlite_cache_mib is not None:
        sqlite_store.CACHE_MIB = args.sqlite_cache_mib
    if args.sqlite_mmap_mib is not None:
        sqlite_store.MMAP_MIB = args.sqlite_mmap_mib
    if args.engine:
        found = asyncio.run(run_duckdb(url, data, args))
        found["peak_rss_mib"] = peak_rss_mib()
        return found
    found = asyncio.run(run(url, data, args))
    found["peak_rss_mib"] = peak_rss_mib()
    if args.recompute:
        found.update(asyncio.run(recompute(url)))
    return found


def measure_apart(url: str, data: Path, args: argparse.Namespace) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(measure, url, data, args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--unsynced", type=float, default=0.02)
    parser.add_argument("--event-share", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=BATCH_RECORDS, help="records per batch")
    parser.add_argument(
        "--stores",
        default="sqlite,redis",
        help="of sqlite, redis, duckdb (ingestion in SQL on the analytics engine)",
    )
    parser.add_argument(
        "--duckdb-memory-mb", type=int, default=MEMORY_LIMIT_MB, help="the engine's memory limit"
    )
    parser.add_argument(
        "--recompute",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="then time two full recomputes of the two segments (default: on)",
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dmp-bench")
    parser.add_argument("--sqlite-cache-mib", type=int, help="the writer's page cache")
    parser.add_argument("--sqlite-mmap-mib", type=int, help="mmap size of every connection")
    args = parser.parse_args()
    args.engine = False
    args.workdir.mkdir(parents=True, exist_ok=True)
    name = f"records-{args.records}-{args.users}-{args.event_share}.jsonl"
    data = args.workdir / name
    if not data.exists():
        started = time.perf_counter()
        generate(data, args.records, args.users, args.event_share)
        print(f"generated {data} in {time.perf_counter() - started:.0f} s")
    size = data.stat().st_size
    print(f"{args.records:,} records, {size / 2**20:.0f} MiB, {args.users:,} partner uids")
    results: dict[str, dict[str, float]] = {}
    for kind in args.stores.split(","):
        if kind == "sqlite":
            db = args.workdir / "bench.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            results[kind] = measure_apart(f"sqlite://{db}", data, args)
        elif kind == "duckdb":
            db = args.workdir / "bench-sync.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            args.engine = True
            results[kind] = measure_apart(f"sqlite://{db}", data, args)
            args.engine = False
        elif kind == "redis":
            if shutil.which("redis-server") is None:
                print("redis-server not found: skipping redis")
                continue
            proc, url = start_redis(args.workdir)
            try:
                results[kind] = measure_apart(url, data, args)
            finally:
                proc.terminate()
                proc.wait()
        print(kind, {k: round(v, 1) for k, v in results[kind].items()})
    print(f"\n{'store':<8} {'records/s':>10} {'seconds':>8} {'accepted':>10} {'pending':>8}"
          f" {'peak RSS':>9}")  # fmt: skip
    for kind, r in results.items():
        if "bytes_per_profile" in r:
            print(f"{kind}: {r['engine_profiles']:,.0f} profiles,"
                  f" {r['bytes_per_profile']:,.0f} bytes per profile on disk")  # fmt: skip
    for kind, r in results.items():
        rate = r["records"] / r["seconds"]
        print(f"{kind:<8} {rate:>10,.0f} {r['seconds']:>8.1f} {r['accepted']:>10,.0f}"
              f" {r['pending']:>8,.0f} {r['peak_rss_mib']:>5,.0f} MiB")  # fmt: skip
    if args.recompute and any("recompute_s" in r for r in results.values()):
        print(f"\n{'store':<8} {'recompute (all new)':>20} {'again (no change)':>18}"
              f" {'memberships':>12}")  # fmt: skip
        for kind, r in results.items():
            if "recompute_s" not in r:
                continue
            print(f"{kind:<8} {r['recompute_s']:>18.1f} s {r['recompute_again_s']:>16.1f} s"
                  f" {r['members']:>12,.0f}")  # fmt: skip
    print(
        f"(cpus: {os.cpu_count()}; "
        "timed until the store is closed, i.e. flushed; peak RSS: the largest process)"
    )


if __name__ == "__main__":
    main()
