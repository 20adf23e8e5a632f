"""Segment recompute and overlap on the analytics engine (DuckDB; Spark beside it with
``--engine spark``), beside the per-profile path.

    .venv/bin/python bench/dmp_engine_bench.py [--profiles 100000] [--compare] [--from-store]
        [--memory-mb 1024] [--threads N] [--engine duckdb|spark]
        [--exports MEMBERS [--exports-only]]

Generates ``--profiles`` profiles with ``bench/dmp_segments_bench.py``'s generator (a DSP sync
for half, three attributes and a few ingested events each, impression-pixel tallies for a
third) and its four segments. Loads them into a DuckDB file (straight from the generator, or
with ``--from-store`` through the key-value store: SQLite populated, then scanned by
``dmp/analytics/load.py``, the migration path), then: a first recompute (every membership is
new: SQL, then the diff written to the store's memberships by ``Memberships.apply``), a
second one (nothing changes), and the exact overlap of every pair of segments.

``--compare`` populates SQLite (as ``--from-store``) and, after the engine wrote its
memberships there, runs the per-profile recompute (``SegmentUpdater``) on the same store in
the same run: it must find nothing to change (the same memberships), and its time is the old
path's recompute without changes. Then 1% of the profiles are written online (a trait write:
staged for the engine, which owns the traits, ``dmp/traits/staging.py``, and written to the
store's ``t`` maps for the per-profile path) and the scheduled recompute's work runs on the
engine (``refresh.py`` applies the staged updates, then the SQL and the diff), beside the
per-profile recompute of the same changes on the same store. One process; peak RSS from
``getrusage``.

``--engine spark`` then runs the same steps on Spark (local mode, ``local[<threads or 2>]``,
Parquet tables in the temporary directory, its memberships written to a second SQLite store)
with the same profiles (the generator's rows, or the rows loaded from SQLite), prints its
figures in a column beside DuckDB's and compares the memberships both engines hold. Spark's
start (the JVM) is timed apart; the peak RSS is the Python process's only.

``--exports N`` (alone, or beside the above) measures a segment export of ``N`` members to an
HTTP destination (batches of 1,000, signed, answered 200 at once by an in-process transport),
in the partner's IDs, read from the engine (DuckDB: its refresh of the profiles, the delta in
SQL) over a SQLite store: the first export (every member new), a second (nothing changed), and
one after 1% of the members left (their profiles marked changed). The engine's first full load
of the profiles (what a recompute would have done before) is timed apart.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.dmp_segments_bench import NOW, SEGMENTS, populate, profile_maps, uid_of  # noqa: E402

from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine  # noqa: E402
from cookiematch.dmp.analytics.engine import AnalyticsEngine  # noqa: E402
from cookiematch.dmp.analytics.load import LoadContext, load_profiles, profile_rows  # noqa: E402
from cookiematch.dmp.analytics.recompute import recompute  # noqa: E402
from cookiematch.dmp.analytics.refresh import LOADED_THROUGH, refresh  # noqa: E402
from cookiematch.dmp.analytics.rows import ProfileRows  # noqa: E402
from cookiematch.dmp.analytics.runs import EngineRuns  # noqa: E402
from cookiematch.dmp.analytics.settings import ENGINES, AnalyticsSettings  # noqa: E402
from cookiematch.dmp.analytics.tables import MEMBERSHIPS  # noqa: E402
from cookiematch.dmp.change_marks import mark_writes  # noqa: E402
from cookiematch.dmp.exports.model import Delivery, HttpDestination  # noqa: E402
from cookiematch.dmp.keys import partners_key  # noqa: E402
from cookiematch.dmp.lifetimes import MEMBERSHIP_TTL  # noqa: E402
from cookiematch.dmp.matches import PartnerMatch  # noqa: E402
from cookiematch.dmp.segment_exports import SegmentExports  # noqa: E402
from cookiematch.dmp.segments import SegmentUpdater, StoredProfiles  # noqa: E402
from cookiematch.dmp.segments.membership import Change, Memberships  # noqa: E402
from cookiematch.dmp.segments.source import split_profile_key  # noqa: E402
from cookiematch.dmp.traits.reader import ProfileReader  # noqa: E402
from cookiematch.dmp.traits.schema import TraitCatalog  # noqa: E402
from cookiematch.dmp.traits.staging import TraitStaging  # noqa: E402
from cookiematch.dmp.traits.writes import ProfileUpdate, TraitStore  # noqa: E402
from cookiematch.dmp.transport import HttpAnswer  # noqa: E402
from cookiematch.storage import Durability, Store, open_store  # noqa: E402

CHUNK = 20_000  # profiles appended to the engine at a time


def generated_rows(profiles: int, context: LoadContext) -> list[list[ProfileRows]]:
    """The generator's profiles as engine rows (no lifetimes: the generator sets none)."""
    rng = random.Random(7)
    chunks: list[list[ProfileRows]] = []
    for start in range(0, profiles, CHUNK):
        chunk = []
        for i in range(start, min(start + CHUNK, profiles)):
            maps = {}
            for key, fields in profile_maps(i, rng).items():
                parts = split_profile_key(key)
                assert parts is not None
                maps[parts[1]] = {f: (v, None) for f, v in fields.items()}
            chunk.append(profile_rows(uid_of(i), maps, context))
        chunks.append(chunk)
    return chunks


async def measure(
    engine: AnalyticsEngine, chunks: list[list[ProfileRows]], store: Store
) -> dict[str, float]:
    """Load ``chunks`` into ``engine``, recompute twice (every membership new, then none)
    writing the diff to ``store``'s memberships, and take the overlap of every pair."""
    figures: dict[str, float] = {}
    started = time.perf_counter()
    for chunk in chunks:
        engine.append(chunk)
    figures["load_s"] = time.perf_counter() - started
    figures["loaded"] = sum(len(c) for c in chunks)
    engine.set_checkpoint(LOADED_THROUGH, NOW)  # as a refresh at NOW would leave it
    memberships = Memberships(store)
    started = time.perf_counter()
    diff = engine.diff_memberships(SEGMENTS, NOW, NOW - memberships.ttl / 2)
    figures["first_sql_s"] = time.perf_counter() - started
    # the SQL alone, left pending; the recompute below does it again and writes the diff
    first = await recompute(engine, SEGMENTS, memberships, NOW)
    figures.update(first_s=first.seconds, joined=first.joined, profiles=first.profiles)
    figures["sizes"] = sum(first.sizes.values())
    assert diff.joined == first.joined
    second = await recompute(engine, SEGMENTS, memberships, NOW)
    figures.update(second_s=second.seconds, second_changes=second.joined + second.left)
    started = time.perf_counter()
    pairs = engine.overlap([s.id for s in SEGMENTS], NOW)
    figures["overlap_s"] = time.perf_counter() - started
    figures["pairs"] = len(pairs)
    figures["overlap_total"] = sum(p.both.value for p in pairs)
    return figures


async def stored_rows(store: Store, context: LoadContext) -> list[list[ProfileRows]]:
    """Every profile of ``store`` as engine rows (``load_profiles``' scan), in chunks."""
    collector = _Collector()
    await load_profiles(store, collector, context, batch=CHUNK)
    return collector.chunks


class _Collector:
    """Takes what ``load_profiles`` appends, for every engine to load the same rows."""

    def __init__(self) -> None:
        self.chunks: list[list[ProfileRows]] = []

    def clear(self) -> None:
        self.chunks = []

    def append(self, profiles: Sequence[ProfileRows]) -> None:
        if profiles:
            self.chunks.append(list(profiles))


def held_memberships(engine: AnalyticsEngine) -> set[tuple[str, str]]:
    """The (profile, segment) pairs ``engine`` holds as written."""
    if isinstance(engine, DuckDBEngine):
        rows = engine.connection.execute(f"SELECT profile, segment FROM {MEMBERSHIPS}")
        return {(p, s) for p, s in rows.fetchall()}
    from cookiematch.dmp.analytics.spark_engine import SparkEngine

    assert isinstance(engine, SparkEngine)
    return {(r[0], r[1]) for r in engine.session.table(MEMBERSHIPS).collect()}


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    figures: dict[str, float] = {}
    context = LoadContext(NOW, TraitCatalog(), MEMBERSHIP_TTL)
    url = f"sqlite:///{tmp}/dmp.db"
    populated = args.from_store or args.compare
    if populated:
        store = open_store(url, durability=Durability.ASYNC)
        await store.start()
        figures["populate_s"] = await populate(store, args.profiles)
        await store.close()
    store = open_store(url)
    await store.start()
    started = time.perf_counter()
    if populated:
        chunks = await stored_rows(store, context)
        figures["scan_s"] = time.perf_counter() - started
    else:
        chunks = generated_rows(args.profiles, context)
        figures["generate_s"] = time.perf_counter() - started
    path = tmp / "analytics.duckdb"
    settings = AnalyticsSettings(str(path), args.memory_mb, threads=args.threads)
    engine = DuckDBEngine(settings)
    figures.update(await measure(engine, chunks, store))
    duckdb_held = held_memberships(engine) if args.engine == "spark" else set()
    engine.close()
    figures["disk_mb"] = path.stat().st_size / 1e6
    figures["bytes_per_profile"] = path.stat().st_size / max(1, args.profiles)
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.compare:
        reader = ProfileReader(store)
        source = StoredProfiles(store, reader.build, ProfileReader.SUFFIXES)
        updater = SegmentUpdater(store, SEGMENTS, source, clock=lambda: NOW)
        old = await updater.recompute(sketches=False)
        figures.update(old_second_s=old.seconds, old_changes=old.joined + old.left)
        figures["old_sizes"] = sum(old.sizes.values())
        await online_changes(args, store, settings, updater, figures)
    await store.close()
    found["duckdb"] = figures
    if args.engine == "spark":
        found["spark"] = await run_spark(args, tmp, chunks, duckdb_held)
    return found


async def online_changes(
    args: argparse.Namespace,
    store: Store,
    settings: AnalyticsSettings,
    updater: SegmentUpdater,
    figures: dict[str, float],
) -> None:
    """1% of the profiles written online (staged for the engine, which owns the traits; to the
    store's ``t`` maps for the per-profile path), then each path's recompute of the change."""
    later = NOW + 60
    changed = [uid_of(i) for i in range(0, args.profiles, 100)]
    updates: dict[str, ProfileUpdate] = {}
    for uid in changed:
        update = ProfileUpdate("bench")
        update.merge({"tier": "gold"}, (), {("purchase", int(later))})
        updates[uid] = update
    await TraitStore(store, TraitCatalog(), clock=lambda: later).apply(updates)
    staging = TraitStaging(settings.staging_directory)
    await TraitStore(store, TraitCatalog(), clock=lambda: later, staging=staging).apply(updates)
    engine = DuckDBEngine(settings)
    context = LoadContext(later + 60, TraitCatalog(), MEMBERSHIP_TTL)
    started = time.perf_counter()
    found = await refresh(store, engine, context, staging)
    done = await recompute(engine, SEGMENTS, Memberships(store), context.now)
    figures["incremental_s"] = time.perf_counter() - started
    figures.update(
        reloaded=found.profiles, staged=found.staged, incremental_changes=done.joined + done.left
    )
    engine.close()
    updater = SegmentUpdater(store, SEGMENTS, updater._source, clock=lambda: context.now)
    old = await updater.recompute(sketches=False)  # at the same time: nothing left to write
    figures.update(old_incremental_s=old.seconds, old_after_engine=old.joined + old.left)


async def run_spark(
    args: argparse.Namespace,
    tmp: Path,
    chunks: list[list[ProfileRows]],
    duckdb_held: set[tuple[str, str]],
) -> dict[str, float]:
    from cookiematch.dmp.analytics.spark_engine import SparkEngine, spark_session

    figures: dict[str, float] = {}
    path = tmp / "spark-tables"
    settings = AnalyticsSettings(str(path), args.memory_mb, threads=args.threads, engine="spark")
    started = time.perf_counter()
    session = spark_session(settings)
    figures["start_s"] = time.perf_counter() - started
    store = open_store(f"sqlite:///{tmp}/spark-memberships.db")
    await store.start()
    engine = SparkEngine(settings, session=session)
    figures.update(await measure(engine, chunks, store))
    figures["same"] = float(held_memberships(engine) == duckdb_held)
    engine.close()
    await store.close()
    size = sum(f.stat().st_size for f in path.rglob("*.parquet"))
    figures["disk_mb"] = size / 1e6
    figures["bytes_per_profile"] = size / max(1, args.profiles)
    session.stop()
    return figures


EXPORTED = "exported_pool"  # the segment the export figures use


class _Accepting:
    """A destination that accepts every batch at once; counts what it was sent."""

    def __init__(self) -> None:
        self.batches = 0

    async def post(self, url: str, body: bytes, headers: object, timeout: float) -> HttpAnswer:
        self.batches += 1
        return HttpAnswer(200, b"{}", {})


async def export_members(store: Store, members: int) -> None:
    """``members`` browsers in ``EXPORTED``, each matched by partner ``dsp``."""
    at = time.time()
    for start in range(0, members, CHUNK):
        uids = [uid_of(i) for i in range(start, min(start + CHUNK, members))]
        await Memberships(store).apply([Change(uid, {EXPORTED: at}) for uid in uids])
        await store.hset_many(
            [
                (
                    partners_key(uid),
                    {"dsp": msgspec.json.encode(PartnerMatch(f"D-{uid}", at))},
                    None,
                )
                for uid in uids
            ]
        )


async def run_exports(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    """Exports read from the engine, timed (``--exports``)."""
    figures: dict[str, float] = {}
    url = f"sqlite:///{tmp}/exports.db"
    store = open_store(url, durability=Durability.ASYNC)
    await store.start()
    started = time.perf_counter()
    await export_members(store, args.exports)
    figures["export_populate_s"] = time.perf_counter() - started
    await store.close()
    store = open_store(url)
    await store.start()
    settings = AnalyticsSettings(str(tmp / "exports.duckdb"), args.memory_mb, threads=args.threads)
    runs = EngineRuns(
        lambda: DuckDBEngine(settings), store, Memberships(store), TraitCatalog(), holder="bench"
    )
    started = time.perf_counter()
    async with runs.engine() as engine:
        await refresh(store, engine, runs.context(time.time()))
    figures["export_load_s"] = time.perf_counter() - started
    delivery = Delivery(batch_size=1000)
    exports = SegmentExports(
        store,
        [EXPORTED],
        [HttpDestination("engine", "http://d.example/", b"k" * 32, "dsp", delivery)],
        engine=runs,
    )

    async def timed(step: str) -> None:
        transport = _Accepting()
        started = time.perf_counter()
        report = await exports.export(EXPORTED, "engine", transport)
        figures[f"{step}_s"] = time.perf_counter() - started
        figures[f"{step}_sent"] = report.sent

    await timed("first")
    await timed("again")
    left = [uid_of(i) for i in range(0, args.exports, 100)]
    await Memberships(store).apply([Change(uid, left=(EXPORTED,)) for uid in left])
    await store.hset_many(mark_writes(left, time.time()))
    await timed("changed")
    await store.close()
    return figures


EXPORT_ROWS = [
    ("members (first export sends them all)", "first_sent", "{:,.0f}"),
    ("first export (s)", "first_s", "{:.2f}"),
    ("second export, nothing changed (s)", "again_s", "{:.2f}"),
    ("after 1% left: removes sent", "changed_sent", "{:,.0f}"),
    ("after 1% left (s)", "changed_s", "{:.2f}"),
]


def export_report(args: argparse.Namespace, figures: dict[str, float]) -> None:
    print(f"\nexport of {args.exports:,} members (HTTP, batches of 1,000), on the engine")
    print(f"  populate the store: {figures['export_populate_s']:.1f} s; the engine's first "
          f"load of the profiles: {figures['export_load_s']:.1f} s")  # fmt: skip
    for label, key, fmt in EXPORT_ROWS:
        print(f"  {label:<38}{fmt.format(figures[key]):>10}")


ROWS: list[tuple[str, str, str]] = [
    ("populate SQLite (s)", "populate_s", "{:.1f}"),
    ("generate rows (s)", "generate_s", "{:.1f}"),
    ("scan SQLite into rows (s)", "scan_s", "{:.1f}"),
    ("start the engine (s)", "start_s", "{:.1f}"),
    ("load the rows into the engine (s)", "load_s", "{:.1f}"),
    ("profiles", "profiles", "{:,.0f}"),
    ("memberships", "sizes", "{:,.0f}"),
    ("recompute, SQL only (s)", "first_sql_s", "{:.2f}"),
    ("recompute, all new (s)", "first_s", "{:.2f}"),
    ("recompute, no change (s)", "second_s", "{:.2f}"),
    ("  changes written", "second_changes", "{:,.0f}"),
    ("overlap, every pair (s)", "overlap_s", "{:.3f}"),
    ("  sum of intersections", "overlap_total", "{:,.0f}"),
    ("files on disk (MB)", "disk_mb", "{:.1f}"),
    ("  bytes per profile", "bytes_per_profile", "{:.0f}"),
    ("peak RSS, Python process (MB)", "peak_rss_mb", "{:.0f}"),
    ("old path: recompute, no change (s)", "old_second_s", "{:.1f}"),
    ("old path: changes it found", "old_changes", "{:,.0f}"),
    ("old path: memberships", "old_sizes", "{:,.0f}"),
    ("1% written online: staged updates applied", "staged", "{:,.0f}"),
    ("  profiles reloaded (marked)", "reloaded", "{:,.0f}"),
    ("  engine: refresh + recompute (s)", "incremental_s", "{:.2f}"),
    ("  changes written", "incremental_changes", "{:,.0f}"),
    ("  old path: recompute (s)", "old_incremental_s", "{:.1f}"),
    ("  old path: changes left to write", "old_after_engine", "{:,.0f}"),
]


def report(args: argparse.Namespace, found: dict[str, dict[str, float]]) -> None:
    engines = list(found)
    print(f"\n{args.profiles:,} profiles, {len(SEGMENTS)} segments, {args.memory_mb} MB")
    print(f"{'':<36}" + "".join(f"{name:>14}" for name in engines))
    for label, key, fmt in ROWS:
        if any(key in figures for figures in found.values()):
            cells = [fmt.format(f[key]) if key in f else "" for f in found.values()]
            print(f"{label:<36}" + "".join(f"{c:>14}" for c in cells))
    duck = found["duckdb"]
    if "old_second_s" in duck and duck["second_s"]:
        print(f"recompute time old/engine: {duck['old_second_s'] / duck['second_s']:.1f}")
        same = duck["old_changes"] == 0 and duck["old_sizes"] == duck["sizes"]
        print(f"same memberships: {'yes' if same else 'NO'}")
    if duck.get("incremental_s"):
        ratio = duck["old_incremental_s"] / duck["incremental_s"]
        print(f"after 1% online writes, recompute time old/engine: {ratio:.1f}")
    if "spark" in found:
        spark = found["spark"]
        for label, key in (
            ("recompute, SQL only", "first_sql_s"),
            ("recompute, no change", "second_s"),
            ("overlap, every pair", "overlap_s"),
        ):
            print(f"Spark/DuckDB time, {label}: {spark[key] / duck[key]:.1f}")
        same = spark["same"] == 1.0 and spark["overlap_total"] == duck["overlap_total"]
        print(f"same memberships and overlap on Spark and DuckDB: {'yes' if same else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--from-store", action="store_true")
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--engine", choices=ENGINES, default="duckdb")
    parser.add_argument("--exports", type=int, metavar="MEMBERS")
    parser.add_argument("--exports-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="enginebench-") as tmp:
        if not args.exports_only:
            found = asyncio.run(run(args, Path(tmp)))
            report(args, found)
        if args.exports:
            export_report(args, asyncio.run(run_exports(args, Path(tmp))))


if __name__ == "__main__":
    main()
