"""Bytes per match-table entry in Redis: one key per entry vs hash-bucketing.

    .venv/bin/python bench/redis_memory.py [--entries 1000000]

Starts a fresh redis-server (7.x, default config) on a free port in a temporary directory and,
for each layout and direction, writes ``entries`` entries exactly as the Redis backend lays them
out (``redis_codec`` header, native/field expiry), then reports (used_memory after − before) /
entries. Directions: forward = 16-byte browser id → buyer uid (16-24 bytes) + 4-byte
timestamp; reverse = 20-byte gid → 16-byte browser id + 4-byte timestamp.

    .venv/bin/python bench/redis_memory.py --table [--entries 1000000] [--seconds 3]

``--table`` measures the real buyer match table instead: for each ``[buyer]
match_table_layout`` it records ``entries`` matches through ``MatchTable.record`` (RedisStore,
async durability, realistic 27-character canonical gids and 16-byte uids) on a fresh
redis-server, reports bytes per entry per direction (the reverse share is the memory freed by
deleting the reverse keys afterwards), then look-ups/s of ``MatchTable.lookup``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import redis  # noqa: E402
from tests.storage.redis_servers import RedisServer  # noqa: E402

from cookiematch.buyer.matchtable import MatchTable  # noqa: E402
from cookiematch.storage import Durability, open_store  # noqa: E402
from cookiematch.storage import redis_codec as codec  # noqa: E402
from cookiematch.storage.bucketed import Buckets  # noqa: E402

TTL_MS = 90 * 86400 * 1000
Entry = tuple[bytes, bytes]
Layout = Callable[[redis.client.Pipeline, str, Entry, int | None], None]


def entries(direction: str, n: int, seed: int = 1) -> Iterator[Entry]:
    rnd = random.Random(seed)
    now = int(time.time()).to_bytes(4, "big")
    for _ in range(n):
        if direction == "forward":
            yield rnd.randbytes(16), rnd.randbytes(rnd.randint(16, 24)) + now
        else:
            yield rnd.randbytes(20), rnd.randbytes(16) + now


def naive(pipe: redis.client.Pipeline, ns: str, entry: Entry, expires: int | None) -> None:
    """One string key per entry: ``ns:`` + Base64 id (what a first version would do)."""
    key = f"{ns}:{base64.urlsafe_b64encode(entry[0]).rstrip(b'=').decode()}"
    raw = codec.pack(entry[1], expires)
    if expires is None:
        pipe.execute_command("SET", key, raw)
    else:
        pipe.execute_command("SET", key, raw, "PXAT", expires)


def bucketed(table: Buckets) -> Layout:
    def write(pipe: redis.client.Pipeline, ns: str, entry: Entry, expires: int | None) -> None:
        key, field = table.locate(entry[0])
        pipe.execute_command("HSET", key, field, codec.pack(entry[1], expires))
        until = codec.FAR_FUTURE_MS if expires is None else expires
        pipe.execute_command("PEXPIREAT", key, until, "GT")  # as RedisStore.hset
        pipe.execute_command("PEXPIREAT", key, until, "NX")

    return write


def measure(client: redis.Redis, layout: Layout, direction: str, n: int, ttl: bool) -> float:
    client.flushall()
    before = int(client.info("memory")["used_memory"])
    expires = codec.expiry_ms(time.time()) + TTL_MS if ttl else None  # type: ignore[operator]
    pipe = client.pipeline(transaction=False)
    for i, entry in enumerate(entries(direction, n)):
        layout(pipe, direction[0], entry, expires)
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    after = int(client.info("memory")["used_memory"])
    return (after - before) / n


NID = "finest-dsp"
GID_HEADER = b"\x08\x01\x12\x10"  # what real google_gids start with ("CAESE...")


def matches(n: int, seed: int = 2) -> list[tuple[str, bytes]]:
    """``n`` (gid, uid): 27-character canonical gids (20 bytes), random 16-byte uids."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        gid = base64.urlsafe_b64encode(GID_HEADER + rnd.randbytes(16)).rstrip(b"=").decode()
        out.append((gid, rnd.randbytes(16)))
    return out


async def fill(table: MatchTable, pairs: list[tuple[str, bytes]], workers: int = 256) -> float:
    """Record every pair (``workers`` coroutines); returns records per second."""
    todo = iter(enumerate(pairs))

    async def worker() -> None:
        for i, (gid, uid) in todo:
            await table.record(gid, uid, i & 0xFFFF)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return len(pairs) / (time.perf_counter() - start)


async def lookups(
    table: MatchTable, pairs: list[tuple[str, bytes]], *, both: bool, seconds: float
) -> tuple[float, float, float]:
    """(look-ups/s, p50 µs, p99 µs) of 64 coroutines looking up known gids (and uids)."""
    rnd = random.Random(3)
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def loop() -> None:
        while time.perf_counter() < stop:
            gid, uid = pairs[rnd.randrange(len(pairs))]
            t = time.perf_counter()
            found = await table.lookup(gid, uid if both else None)
            latencies.append(time.perf_counter() - t)
            assert found.by_gid is not None

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(64)))
    rate = len(latencies) / (time.perf_counter() - start)
    latencies.sort()
    pick = lambda q: latencies[int(q * (len(latencies) - 1))] * 1e6  # noqa: E731
    return rate, pick(0.5), pick(0.99)


def drop_reverse(client: redis.Redis, table: MatchTable) -> None:
    """Delete every reverse-direction key of ``table`` (DEL: freed at once)."""
    if table.buckets is not None:
        names = [f"{table.buckets.reverse.namespace}:{b:x}" for b in range(table.buckets.buckets)]
    else:
        names = [k.decode() for k in client.scan_iter(match=f"bm:{NID}:u:*", count=5000)]
    for i in range(0, len(names), 5000):
        client.delete(*names[i : i + 5000])


async def measure_table(server: RedisServer, layout: str, n: int, seconds: float) -> None:
    client = server.client()
    client.flushall()
    pairs = matches(n)
    before = int(client.info("memory")["used_memory"])
    store = open_store(server.url, durability=Durability.ASYNC)
    await store.start()
    table = await MatchTable.open(
        store, NID, ttl_seconds=28 * 86400, clock=time.time, layout=layout,  # type: ignore[arg-type]
        expected_entries=n,
    )  # fmt: skip
    rate = await fill(table, pairs)
    await store.close()  # flushes what is queued
    after = int(client.info("memory")["used_memory"])
    store = open_store(server.url)
    await store.start()
    table = await MatchTable.open(
        store, NID, ttl_seconds=28 * 86400, clock=time.time, expected_entries=n
    )
    gid_only = await lookups(table, pairs, both=False, seconds=seconds)
    both = await lookups(table, pairs, both=True, seconds=seconds)
    await store.close()
    drop_reverse(client, table)
    time.sleep(2)  # serverCron shrinks the emptied key dicts
    dropped = int(client.info("memory")["used_memory"])
    reverse = (after - dropped) / n
    forward = (dropped - before) / n
    print(
        f"{layout:<8} {forward:>9.1f} {reverse:>9.1f} {(after - before) / n:>8.1f} "
        f"{rate:>10,.0f} {gid_only[0]:>10,.0f} {gid_only[1]:>6.0f}/{gid_only[2]:<6.0f}"
        f"{both[0]:>10,.0f} {both[1]:>6.0f}/{both[2]:<6.0f}",
        flush=True,
    )
    if table.buckets is not None:
        some = f"{table.buckets.forward.namespace}:0"
        print(f"         bucket encoding {client.object('encoding', some)!r}, "
              f"{table.buckets.buckets:,} buckets per direction, "
              f"{client.hlen(some)} fields in bucket 0", flush=True)  # fmt: skip


def main_table(n: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        try:
            version = server.client().info("server")["redis_version"]
            print(f"redis {version}, {n:,} matches via MatchTable.record, bytes per entry")
            print(f"{'layout':<8} {'forward':>9} {'reverse':>9} {'both':>8} {'records/s':>10} "
                  f"{'gid lk/s':>10} {'p50/p99 µs':<13}{'gid+uid/s':>10} p50/p99 µs")  # fmt: skip
            for layout in ("keys", "buckets"):
                asyncio.run(measure_table(server, layout, n, seconds))
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--table", action="store_true", help="measure the real MatchTable")
    parser.add_argument("--seconds", type=float, default=3.0, help="per look-up run (--table)")
    args = parser.parse_args()
    n = args.entries
    if args.table:
        main_table(n, args.seconds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        try:
            client = server.client()
            version = client.info("server")["redis_version"]
            print(f"redis {version}, {n:,} entries per run, bytes per entry (used_memory delta)")
            layouts: list[tuple[str, Layout]] = [("one key per entry", naive)]
            for per in (64, 100):
                table = Buckets("x", max(1, n // per))
                layouts.append((f"buckets of ~{per} fields", bucketed(table)))
            print(f"{'layout':<26} {'ttl':<5} {'forward':>9} {'reverse':>9}")
            for name, layout in layouts:
                for ttl in (True, False):
                    row = [measure(client, layout, d, n, ttl) for d in ("forward", "reverse")]
                    print(f"{name:<26} {'yes' if ttl else 'no':<5} {row[0]:>9.1f} {row[1]:>9.1f}")
            enc = client.object("encoding", next(iter(client.scan_iter(count=10))))
            print(f"bucket encoding: {enc!r}; pid {os.getpid()}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
