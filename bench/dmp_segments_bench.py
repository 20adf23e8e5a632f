"""Segment recompute time side by side: the embedded store (SQLite) and Redis, one table.

    .venv/bin/python bench/dmp_segments_bench.py [--profiles 1000000] [--stores sqlite,redis]
    .venv/bin/python bench/dmp_segments_bench.py --no-populate --sqlite-url sqlite:///var/x.db

Populates ``--profiles`` profiles directly in the store layout the DMP reads (a DSP sync for
half, three attributes and a few ingested events each, impression-pixel tallies for a third),
unless ``--no-populate`` reuses a store that ``bench/dmp_ingest_bench.py`` filled. Then, per
store: a first full recompute (every membership is new: scan + evaluate + write), a second one
(nothing changes: scan + evaluate), and incremental updates of 20,000 profiles
(``SegmentUpdater.profiles_changed``). Redis: a fresh ``redis-server`` on a free port,
persistence off, unless ``--redis-url``. One process, one event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import msgspec  # noqa: E402
from tests.storage.redis_servers import RedisServer  # noqa: E402

from cookiematch.clock import SECONDS_PER_DAY as DAY  # noqa: E402
from cookiematch.dmp import keys  # noqa: E402
from cookiematch.dmp.matches import PartnerMatch  # noqa: E402
from cookiematch.dmp.segments import Segment, SegmentUpdater, StoredProfiles  # noqa: E402
from cookiematch.dmp.segments.rules import parse_rule  # noqa: E402
from cookiematch.dmp.traits.fields import attribute_field, event_field  # noqa: E402
from cookiematch.dmp.traits.reader import ProfileReader  # noqa: E402
from cookiematch.storage import Durability, Store, open_store  # noqa: E402

NOW = 1_700_000_000.0
SEGMENTS = [
    Segment("gold_buyers", parse_rule({"all": [
        {"attribute": "tier", "value": "gold"},
        {"event": "purchase", "within_days": 30},
    ]})),
    Segment("openers", parse_rule({"event": "email_open", "within_days": 7, "at_least": 2})),
    Segment("exposed_c1", parse_rule({"exposed": "imp", "campaign": "c1"})),
    Segment("young_synced", parse_rule({"all": [
        {"attribute": "age", "op": "lt", "value": 30}, {"synced": "dsp"},
    ]})),
]  # fmt: skip
INCREMENTAL = 20_000


def uid_of(i: int) -> str:
    return f"bench{i:017d}"


def profile_maps(i: int, rng: random.Random) -> dict[str, dict[str, bytes]]:
    uid = uid_of(i)
    traits = {
        attribute_field("tier"): msgspec.json.encode(rng.choice(("gold", "silver", "bronze"))),
        attribute_field("age"): msgspec.json.encode(rng.randint(18, 80)),
        attribute_field("country"): msgspec.json.encode(rng.choice(("FR", "DE", "US"))),
    }
    for _ in range(rng.randint(0, 4)):
        name = rng.choice(("purchase", "email_open", "email_open"))
        traits[event_field(name, int(NOW) - rng.randint(0, 60 * DAY))] = b"crm"
    maps = {keys.traits_key(uid): traits}
    if i % 2 == 0:
        maps[keys.partners_key(uid)] = {"dsp": msgspec.json.encode(PartnerMatch(f"D{i}", NOW))}
    if i % 3 == 0:
        maps[keys.events_key(uid)] = {
            "imp|c1|-|-": msgspec.json.encode([rng.randint(1, 5), NOW, NOW])
        }
    return maps


async def populate(store: Store, profiles: int) -> float:
    rng = random.Random(7)
    started = time.perf_counter()
    chunk = 2000
    for start in range(0, profiles, chunk):
        writes = []
        for i in range(start, min(start + chunk, profiles)):
            for key, mapping in profile_maps(i, rng).items():
                writes.append(store.hset(key, mapping))
        await asyncio.gather(*writes)
        if start and start % 500_000 == 0:
            print(f"  populated {start:,}", file=sys.stderr)
    return time.perf_counter() - started


async def measure(url: str, profiles: int, populate_first: bool) -> dict[str, float]:
    figures: dict[str, float] = {}
    if populate_first:
        store = open_store(url, durability=Durability.ASYNC)
        await store.start()
        figures["populate_s"] = await populate(store, profiles)
        await store.close()
    store = open_store(url)
    await store.start()
    reader = ProfileReader(store)
    source = StoredProfiles(store, reader.build, ProfileReader.SUFFIXES)
    updater = SegmentUpdater(store, SEGMENTS, source, clock=lambda: NOW)
    first = await updater.recompute()
    figures.update(profiles=first.profiles, first_s=first.seconds, joined=first.joined)
    second = await updater.recompute()
    figures["second_s"] = second.seconds
    figures["sizes"] = sum(second.sizes.values())
    sample = [uid_of(i) for i in random.Random(1).sample(range(profiles), INCREMENTAL)]
    started = time.perf_counter()
    for i in range(0, len(sample), 1000):
        await updater.profiles_changed(sample[i : i + 1000])
    figures["incremental_per_s"] = INCREMENTAL / (time.perf_counter() - started)
    await store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--sqlite-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--no-populate", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="segbench-") as tmp:
        for name in args.stores.split(","):
            server = None
            if name == "sqlite":
                url = args.sqlite_url or f"sqlite:///{tmp}/dmp.db"
            else:
                url = args.redis_url
                if url is None:
                    server = RedisServer(Path(tmp) / "redis")
                    url = server.url
            print(f"{name}: {url}", file=sys.stderr)
            try:
                results[name] = asyncio.run(measure(url, args.profiles, not args.no_populate))
            finally:
                if server is not None:
                    server.stop()
    print(f"\n{args.profiles:,} profiles, {len(SEGMENTS)} segments")
    rows = [
        ("populate (s)", "populate_s", "{:.1f}"),
        ("profiles scanned", "profiles", "{:,.0f}"),
        ("memberships", "sizes", "{:,.0f}"),
        ("recompute, all new (s)", "first_s", "{:.1f}"),
        ("recompute, no change (s)", "second_s", "{:.1f}"),
        ("  profiles/s", "rate", "{:,.0f}"),
        ("incremental (profiles/s)", "incremental_per_s", "{:,.0f}"),
    ]
    for figures in results.values():
        figures["rate"] = figures["profiles"] / figures["second_s"] if figures["second_s"] else 0
    names = list(results)
    print(f"{'':<28}" + "".join(f"{n:>14}" for n in names))
    for label, key, fmt in rows:
        cells = [fmt.format(results[n][key]) if key in results[n] else "-" for n in names]
        print(f"{label:<28}" + "".join(f"{c:>14}" for c in cells))
    if len(names) == 2 and results[names[1]].get("second_s"):
        ratio = results[names[0]]["second_s"] / results[names[1]]["second_s"]
        print(f"recompute time {names[0]}/{names[1]}: {ratio:.2f}")


if __name__ == "__main__":
    main()
