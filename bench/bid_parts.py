"""``POST /bid`` in process with its parts switched off in turn: what each costs.

    flock /tmp/bench.lock .venv/bin/python bench/bid_parts.py [--rounds 4] [--seconds 1.5]
        [--store sqlite|redis://host:port/db]

The buyer as ``bench/handler_bench.py`` builds it (on SQLite, or on the Redis database given; the
HTTP benchmark's body, its gid matched first, 64 coroutines through ``RSGIAdapter``), measured as
served and without: the metrics (the answer's, the store call's, the buyer's stats and the policy's
counts, as plain dicts), the bid log, the signed ``nurl``, the store guard (the table reads the
store itself), then all four. Rounds alternate the variants; prints the best and the median µs of
CPU per request of each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import handler_bench
import msgspec

from cookiematch.buyer.bidder import Bidder
from cookiematch.roots.buyer import BuyerServer
from cookiematch.tally import counter, each_counter
from cookiematch.web import rsgi
from cookiematch.web.rsgi import RSGIAdapter

VARIANTS = ("as served", "no metrics", "no bid log", "no nurl", "no guard", "none of the four")


def switcher(bidder: Bidder) -> Callable[[str], None]:
    """Sets the parts of one variant (every other part as served)."""
    served: dict[str, Any] = {
        "record": rsgi.record,
        "counts": bidder._policy.counts,
        "stats": bidder.stats._counts,
        "append": bidder.bid_log.append_later,
        "wins": bidder._win_urls,
        "store": bidder.table._store,
        "common": bidder._common,
    }

    def switch(variant: str) -> None:
        everything = variant == "none of the four"
        metrics = everything or variant == "no metrics"
        rsgi.record = (lambda *_: None) if metrics else served["record"]  # type: ignore[attr-defined]
        bidder._policy.counts = Counter() if metrics else served["counts"]
        bidder.stats.__init__(Counter() if metrics else served["stats"])  # type: ignore[misc]
        bidder.bid_log.append_later = (  # type: ignore[method-assign]
            (lambda *_: None) if everything or variant == "no bid log" else served["append"]
        )
        bidder._win_urls = None if everything or variant == "no nurl" else served["wins"]
        store = served["store"]
        bidder.table._store = store.inner if everything or variant == "no guard" else store
        bidder._common = msgspec.structs.replace(  # its counts of the policy's decisions
            served["common"],
            count_policy=counter(bidder._policy.counts),
            count_policy_each=each_counter(bidder._policy.counts),
        )

    return switch


async def drive(args: argparse.Namespace, directory: Path) -> None:
    store_url = f"sqlite:///{directory}/b.db" if args.store == "sqlite" else args.store
    server = handler_bench.build_server("buyer", directory, store_url, "ack")
    assert isinstance(server, BuyerServer)
    adapter = RSGIAdapter(server.app)
    await server.app.startup()
    make = await handler_bench.bid(adapter, directory)
    answer = server.app.routes["/bid"].direct_body  # BuyerRoutes.bid_answer, bound
    switch = switcher(answer.__self__._bidder)  # type: ignore[union-attr]
    stop_at = 0.0

    async def loop() -> int:
        n = 0
        while time.perf_counter() < stop_at:
            scope, body = make(n)
            await adapter(scope, handler_bench.Proto(body))
            n += 1
        return n

    spent: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_ in range(args.rounds + 1):  # the first round warms up
        for variant in VARIANTS if round_ % 2 else VARIANTS[::-1]:
            switch(variant)
            stop_at = time.perf_counter() + args.seconds
            cpu = time.process_time()
            n = sum(await asyncio.gather(*(loop() for _ in range(64))))
            if round_:
                spent[variant].append((time.process_time() - cpu) / n * 1e6)
    switch("as served")
    await server.app.shutdown()
    for variant, values in spent.items():
        print(
            f"{variant:<18} best {min(values):5.1f}  median {statistics.median(values):5.1f} µs/req"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--store", default="sqlite", help="sqlite, or a redis:// URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bid-parts-") as tmp:
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(drive(args, Path(tmp)))
        else:
            asyncio.run(drive(args, Path(tmp)))


if __name__ == "__main__":
    main()
