"""Bytes per match-table entry in Redis: one key per entry vs hash-bucketing.

    .venv/bin/python bench/redis_memory.py [--entries 1000000]

Starts a fresh redis-server (7.x, default config) on a free port in a temporary directory and,
for each layout and direction, writes ``entries`` entries exactly as the Redis backend lays them
out (``redis_codec`` header, native/field expiry), then reports (used_memory after − before) /
entries. Directions: forward = 16-byte browser id → buyer uid (16-24 bytes) + 4-byte
timestamp; reverse = 20-byte gid → 16-byte browser id + 4-byte timestamp.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.entries
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
