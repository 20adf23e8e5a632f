"""CPU per request of a DMP-shaped durable write through the store: two calls or one.

    .venv/bin/python bench/write_calls_bench.py [--seconds 3] [--rounds 2] [--store sqlite]

64 coroutines, each request a new plain key (40 bytes) and a new one-field map (30 bytes),
SQLite under ``ack`` (a new file per run) or a ``redis://`` URL, through the store's guard as
a request's calls go (``--plain``: the backend directly). Three shapes, alternated in one
process: ``set`` alone, ``gather(set, hset)`` (the DMP callback before) and one
``write_together`` (after). Prints µs of this process's CPU per request (every thread).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from cookiematch.storage import Store, open_store
from cookiematch.storage.base import Write
from cookiematch.storage.guard import GuardedStore

TTL = 86_400.0


def shapes(store: Store) -> dict[str, Callable[[int], Awaitable[object]]]:
    def plain(i: int) -> Awaitable[object]:
        return store.set(f"r{i}", b"x" * 40, ttl=TTL)

    def gathered(i: int) -> Awaitable[object]:
        return asyncio.gather(
            store.set(f"r{i}", b"x" * 40, ttl=TTL), store.hset(f"p{i}", {"a": b"y" * 30}, ttl=TTL)
        )

    def together(i: int) -> Awaitable[object]:
        return store.write_together(
            [Write(f"r{i}", b"x" * 40, TTL)], [(f"p{i}", {"a": b"y" * 30}, TTL)]
        )

    return {"set": plain, "gather(set, hset)": gathered, "write_together": together}


async def run(url: str, shape: str, seconds: float, guarded: bool) -> float:
    backend = open_store(url)
    await backend.start()
    store: Store = GuardedStore(backend, deadline=1.0) if guarded else backend
    call = shapes(store)[shape]
    ids = itertools.count()
    done = 0
    stop = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await call(next(ids))
            done += 1

    cpu = time.process_time()
    await asyncio.gather(*(client() for _ in range(64)))
    cpu = time.process_time() - cpu
    await store.close()
    return 1e6 * cpu / max(done, 1)


async def main(args: argparse.Namespace) -> None:
    for round_ in range(args.rounds):
        for shape in ("set", "gather(set, hset)", "write_together"):
            if args.store == "sqlite":
                url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='write-calls-'))}/store.db"
            else:
                url = args.store
            cost = await run(url, shape, args.seconds, not args.plain)
            print(f"round {round_ + 1}  {shape:<18} {cost:6.1f} µs CPU per request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--store", default="sqlite", help="sqlite, or a redis:// URL")
    parser.add_argument("--plain", action="store_true", help="no guard")
    uvloop.run(main(parser.parse_args()))
