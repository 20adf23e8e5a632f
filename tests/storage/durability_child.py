"""Child process of the durability test: write keys forever, print each once acknowledged.

Usage: python durability_child.py URL ack|async. A key is printed (and flushed) only after its
``await store.set(...)`` returned; the parent kill -9s this process at some point.
"""

from __future__ import annotations

import asyncio
import sys

from cookiematch.storage import Durability, open_store

WORKERS = 64


def value_of(key: str) -> bytes:
    return key.encode() * 3


async def main(url: str, durability: Durability) -> None:
    store = open_store(url, durability=durability)

    async def worker(w: int) -> None:
        for i in range(10**9):
            key = f"w{w}-{i}"
            await store.set(key, value_of(key))
            sys.stdout.write(key + "\n")
            sys.stdout.flush()

    await asyncio.gather(*(worker(w) for w in range(WORKERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Durability(sys.argv[2])))
