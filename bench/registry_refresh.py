"""What the exchange registry's refresh (every 2 s in each worker) costs against the keys
beside it on Redis: a private redis-server holding N other keys (hosted match entries), 20
buyers and ``--user-lists`` user lists; per refresh, the wall time, the worker's CPU and
redis-server's CPU, when nothing changed and after another worker's change (which makes the
refresh read the registry's maps).

    .venv/bin/python bench/registry_refresh.py [--keys 1000,100000,500000] [--refreshes 5]
        [--user-lists 0]

The tree measured is the one on ``PYTHONPATH`` (``src`` by default): run it once per tree for
a before/after. Needs ``redis-server``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers

from cookiematch.exchange.model import Buyer, UserList
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.storage import connect_store

BUYERS = 20
FILL_BATCH = 10_000


def server_cpu(client: redis.Redis) -> float:
    """redis-server's CPU seconds so far (user + system), from its ``INFO``: microseconds, where
    ``servers.cpu_seconds`` reads /proc's clock ticks (10 ms, more than a refresh costs)."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def fill(client: redis.Redis, count: int) -> None:
    """``count`` hosted-match-like keys, none of the registry's."""
    client.flushall()
    for start in range(0, count, FILL_BATCH):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(count, start + FILL_BATCH)):
            pipe.set(f"hm:{{browser-{n}}}:dsp", b"x")
        pipe.execute()


Costs = tuple[float, float, float]
"""Per refresh: wall seconds, this process's CPU seconds, redis-server's CPU seconds."""


async def measure(
    url: str, client: redis.Redis, refreshes: int, user_lists: int
) -> tuple[Costs, Costs]:
    """A refresh's costs when nothing changed, and after another worker's change."""
    store = await connect_store(url)
    try:
        registry, other = ExchangeRegistry(store), ExchangeRegistry(store)
        redirect = RedirectTemplate.compile("http://buyer.example/match?id=")
        for n in range(BUYERS):
            await registry.put_buyer(Buyer(f"buyer_{n}", redirect))
        for n in range(1, user_lists + 1):
            await registry.put_user_list(UserList(n, f"buyer_{n % BUYERS}"))
        await registry.refresh()  # the first (an earlier layout looked for once)
        spent = {False: [0.0, 0.0, 0.0], True: [0.0, 0.0, 0.0]}  # unchanged, changed
        for n in range(2 * refreshes):
            changed = n % 2 == 1
            if changed:
                await other.put_user_list(UserList(user_lists + 1, f"buyer_{n % BUYERS}"))
            server, wall, cpu = server_cpu(client), time.perf_counter(), time.process_time()
            await registry.refresh()
            total = spent[changed]
            total[0] += time.perf_counter() - wall
            total[1] += time.process_time() - cpu
            total[2] += server_cpu(client) - server
    finally:
        await store.close()
    wall, cpu, server = (value / refreshes for value in spent[False])
    wall_changed, cpu_changed, server_changed = (value / refreshes for value in spent[True])
    return (wall, cpu, server), (wall_changed, cpu_changed, server_changed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", default="1000,100000,500000")
    parser.add_argument("--refreshes", type=int, default=5)
    parser.add_argument("--user-lists", type=int, default=0, help="user lists stored")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="registry-refresh-") as tmp,
        servers.redis_server(Path(tmp)) as port,
    ):
        client = redis.Redis(port=port)
        for count in (int(k) for k in args.keys.split(",")):
            fill(client, count)
            url = f"redis://127.0.0.1:{port}/0"
            costs = asyncio.run(measure(url, client, args.refreshes, args.user_lists))
            for (wall, cpu, server), when in zip(costs, ("unchanged", "changed"), strict=True):
                print(
                    f"{count:>9,} other keys, {args.user_lists:,} user lists, {when:>9}: a "
                    f"refresh {wall * 1e3:8.2f} ms wall, {cpu * 1e3:8.2f} ms of the worker's "
                    f"CPU, {server * 1e3:8.2f} ms of redis-server's"
                )


if __name__ == "__main__":
    main()
