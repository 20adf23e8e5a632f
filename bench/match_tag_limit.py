"""How closely the shared match-tag rate limit holds across the workers of one server.

    .venv/bin/python bench/match_tag_limit.py [--limit 100] [--offered 400] [--seconds 10]
        [--workers 2] [--store sqlite|redis] [--clients 16]

Starts ``cookiematch serve --workers N`` with a buyer limited to ``--limit`` match tags per
second (``max_match_tags_per_second``), then sends ``--offered`` match tags per second for it,
paced, from ``--clients`` clients, each request on a new connection (so that every worker takes
a part), for ``--seconds``. Counts the admitted (redirect with a ``google_gid``) and the limited
(redirect without one), and prints the admitted rate against the limit and against the bound
stated in ``src/cookiematch/exchange/rate_limit.py`` (``R*T + 3*n*R*S + n`` from a cold start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import cookiematch, redis_server

from cookiematch.exchange.rate_limit import SYNC_SECONDS
from cookiematch.protocol.cookies import format_browser_id

BUYER = """\
[[exchange.buyers]]
nid = "limited"
redirect_url = "http://limited.example/m?id="
max_match_tags_per_second = {limit}
"""


async def offer(base: str, rate: float, seconds: float, clients: int) -> tuple[int, int, float]:
    """``rate`` match tags per second for ``seconds``: (admitted, limited, seconds taken)."""
    counts = [0, 0]
    started = time.monotonic()
    interval = clients / rate

    async def client(index: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            due = started + index * interval / clients
            while due - started < seconds:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                due += interval
                cookie = f"cm_id={format_browser_id(os.urandom(16))}"
                response = await http.get(
                    "/pixel?google_nid=limited&google_cm",
                    headers={"Cookie": cookie, "Connection": "close"},
                )
                if response.status_code != 302:
                    raise RuntimeError(f"answered {response.status_code}: {response.text}")
                counts["google_gid=" not in response.headers["location"]] += 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    return counts[0], counts[1], time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=float, default=100.0)
    parser.add_argument("--offered", type=float, default=400.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        store_url = f"sqlite:///{directory / 'exchange.db'}"
        if args.store == "redis":
            store_url = f"redis://127.0.0.1:{stack.enter_context(redis_server(directory))}/0"
        service = stack.enter_context(
            cookiematch(
                directory / "exchange",
                store_url,
                workers=args.workers,
                extra_config=BUYER.format(limit=args.limit),
            )
        )
        base = f"http://127.0.0.1:{service.port}"
        admitted, limited, taken = asyncio.run(
            offer(base, args.offered, args.seconds, args.clients)
        )
    rate, n = args.limit, args.workers
    bound = rate * taken + 3 * n * rate * SYNC_SECONDS + n
    print(f"store {args.store}, {n} workers, limit {rate:g}/s, offered {args.offered:g}/s")
    print(f"sent {admitted + limited} in {taken:.2f} s ({(admitted + limited) / taken:.1f}/s)")
    print(
        f"admitted {admitted} ({admitted / taken:.1f}/s, {admitted / (rate * taken):.3f} x limit)"
    )
    print(f"limited  {limited}")
    print(f"bound    {bound:.0f} (R*T + 3*n*R*S + n); admitted/bound {admitted / bound:.3f}")


if __name__ == "__main__":
    main()
