"""Segment recompute and overlap on the analytics engine (DuckDB), beside the per-profile path.

    .venv/bin/python bench/dmp_engine_bench.py [--profiles 100000] [--compare] [--from-store]
        [--memory-mb 1024] [--threads N]

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
path's recompute without changes. Then 1% of the profiles are written online (a trait write,
which marks them changed: ``dmp/change_marks.py``) and the scheduled recompute's work runs on
the engine (``refresh.py`` reloads the marked profiles only, then the SQL and the diff), beside
the per-profile recompute of the same changes on the same store. One process; peak RSS from
``getrusage``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.dmp_segments_bench import NOW, SEGMENTS, populate, profile_maps, uid_of  # noqa: E402

from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine  # noqa: E402
from cookiematch.dmp.analytics.load import LoadContext, load_profiles, profile_rows  # noqa: E402
from cookiematch.dmp.analytics.recompute import recompute  # noqa: E402
from cookiematch.dmp.analytics.refresh import LOADED_THROUGH, refresh  # noqa: E402
from cookiematch.dmp.analytics.rows import ProfileRows  # noqa: E402
from cookiematch.dmp.analytics.settings import AnalyticsSettings  # noqa: E402
from cookiematch.dmp.lifetimes import MEMBERSHIP_TTL  # noqa: E402
from cookiematch.dmp.segments import SegmentUpdater, StoredProfiles  # noqa: E402
from cookiematch.dmp.segments.membership import Memberships  # noqa: E402
from cookiematch.dmp.segments.source import split_profile_key  # noqa: E402
from cookiematch.dmp.traits.reader import ProfileReader  # noqa: E402
from cookiematch.dmp.traits.schema import TraitCatalog  # noqa: E402
from cookiematch.dmp.traits.writes import ProfileUpdate, TraitStore  # noqa: E402
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


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
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
    path = tmp / "analytics.duckdb"
    settings = AnalyticsSettings(str(path), args.memory_mb, threads=args.threads)
    engine = DuckDBEngine(settings)
    started = time.perf_counter()
    if populated:
        figures["loaded"] = await load_profiles(store, engine, context)
    else:
        chunks = generated_rows(args.profiles, context)
        figures["generate_s"] = time.perf_counter() - started
        started = time.perf_counter()
        for chunk in chunks:
            engine.append(chunk)
        figures["loaded"] = sum(len(c) for c in chunks)
        del chunks
    figures["load_s"] = time.perf_counter() - started
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
    return figures


async def online_changes(
    args: argparse.Namespace,
    store: Store,
    settings: AnalyticsSettings,
    updater: SegmentUpdater,
    figures: dict[str, float],
) -> None:
    """1% of the profiles written online, then each path's recompute of the change."""
    later = NOW + 60
    changed = [uid_of(i) for i in range(0, args.profiles, 100)]
    updates: dict[str, ProfileUpdate] = {}
    for uid in changed:
        update = ProfileUpdate("bench")
        update.merge({"tier": "gold"}, (), {("purchase", int(later))})
        updates[uid] = update
    await TraitStore(store, TraitCatalog(), clock=lambda: later).apply(updates)
    engine = DuckDBEngine(settings)
    context = LoadContext(later + 60, TraitCatalog(), MEMBERSHIP_TTL)
    started = time.perf_counter()
    found = await refresh(store, engine, context)
    done = await recompute(engine, SEGMENTS, Memberships(store), context.now)
    figures["incremental_s"] = time.perf_counter() - started
    figures.update(reloaded=found.profiles, incremental_changes=done.joined + done.left)
    engine.close()
    updater = SegmentUpdater(store, SEGMENTS, updater._source, clock=lambda: context.now)
    old = await updater.recompute(sketches=False)  # at the same time: nothing left to write
    figures.update(old_incremental_s=old.seconds, old_after_engine=old.joined + old.left)


def report(args: argparse.Namespace, figures: dict[str, float]) -> None:
    print(f"\n{args.profiles:,} profiles, {len(SEGMENTS)} segments, DuckDB {args.memory_mb} MB")
    rows: list[tuple[str, str, str]] = [
        ("populate SQLite (s)", "populate_s", "{:.1f}"),
        ("generate rows (s)", "generate_s", "{:.1f}"),
        ("load into DuckDB (s)", "load_s", "{:.1f}"),
        ("profiles", "profiles", "{:,.0f}"),
        ("memberships", "sizes", "{:,.0f}"),
        ("recompute, SQL only (s)", "first_sql_s", "{:.2f}"),
        ("recompute, all new (s)", "first_s", "{:.2f}"),
        ("recompute, no change (s)", "second_s", "{:.2f}"),
        ("  changes written", "second_changes", "{:,.0f}"),
        ("overlap, every pair (s)", "overlap_s", "{:.3f}"),
        ("DuckDB file (MB)", "disk_mb", "{:.1f}"),
        ("  bytes per profile", "bytes_per_profile", "{:.0f}"),
        ("peak RSS (MB)", "peak_rss_mb", "{:.0f}"),
        ("old path: recompute, no change (s)", "old_second_s", "{:.1f}"),
        ("old path: changes it found", "old_changes", "{:,.0f}"),
        ("old path: memberships", "old_sizes", "{:,.0f}"),
        ("1% written online: profiles reloaded", "reloaded", "{:,.0f}"),
        ("  engine: refresh + recompute (s)", "incremental_s", "{:.2f}"),
        ("  changes written", "incremental_changes", "{:,.0f}"),
        ("  old path: recompute (s)", "old_incremental_s", "{:.1f}"),
        ("  old path: changes left to write", "old_after_engine", "{:,.0f}"),
    ]
    for label, key, fmt in rows:
        if key in figures:
            print(f"{label:<36}{fmt.format(figures[key]):>14}")
    if "old_second_s" in figures and figures["second_s"]:
        print(f"recompute time old/engine: {figures['old_second_s'] / figures['second_s']:.1f}")
        same = figures["old_changes"] == 0 and figures["old_sizes"] == figures["sizes"]
        print(f"same memberships: {'yes' if same else 'NO'}")
    if figures.get("incremental_s"):
        ratio = figures["old_incremental_s"] / figures["incremental_s"]
        print(f"after 1% online writes, recompute time old/engine: {ratio:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--from-store", action="store_true")
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="enginebench-") as tmp:
        figures = asyncio.run(run(args, Path(tmp)))
    report(args, figures)


if __name__ == "__main__":
    main()
