"""Child process of the durability test: write keys forever, print each once acknowledged.

Usage: python durability_child.py URL ack|async. A key is printed (and flushed) only after its
``await store.set(...)`` returned; the parent kill -9s this process (or the Redis server) at
some point. A write that raises StorageError (the server is away) is not printed; the worker
goes on with its next key.
"""

from __future__ import annotations

import asyncio
import sys

from cookiematch.errors import StorageError
from cookiematch.storage import Durability, open_store

WORKERS = 64


def value_of(key: str) -> bytes:
    return key.encode() * 3


async def main(url: str, durability: Durability) -> None:
    store = open_store(url, durability=durability)
    await store.start()

    async def worker(w: int) -> None:
        for i in range(10**9):
            key = f"w{w}-{i}"
            try:
                await store.set(key, value_of(key))
            except StorageError:
                await asyncio.sleep(0.05)
                continue
            sys.stdout.write(key + "\n")
            sys.stdout.flush()

    await asyncio.gather(*(worker(w) for w in range(WORKERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Durability(sys.argv[2])))
