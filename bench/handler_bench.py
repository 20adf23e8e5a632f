"""In-process cost of a hot route through the RSGI adapter, without the network: µs per request.

    .venv/bin/python bench/handler_bench.py [--seconds 3] [--concurrency 64] [--store sqlite]
        [--endpoint cookie_match|cookie_match_tc|hosted_match|bid|google_hm|buyer_match|
                    dmp_callback] [--loop asyncio|uvloop]
        [--rounds N] [--profile out.html|out.txt] [--distinct-browsers]

Builds the endpoint's App (the exchange's; the buyer's for ``bid``) from a generated config
exactly as a worker does, then drives ``RSGIAdapter.__call__`` with fake granian scope/protocol
objects from ``concurrency`` coroutines for ``seconds``, on asyncio's loop (``--loop uvloop``:
the loop granian serves on). It reports requests per second of *this process's CPU time* (so a
busy machine slows it less than wall-clock figures) and wall-clock rate. No granian, no socket:
the difference with the wrk figure is the server's I/O. ``--profile`` writes a pyinstrument
report of the run (HTML if the path ends in ``.html``, else text) (pip install pyinstrument).

``cookie_match_tc`` is ``cookie_match`` with ``gdpr=1`` and a TC string (``TC_STRING``: 444
characters, purposes 1-10 and 201 vendors by consent, the buyer's vendor 32 among them): what
regulated traffic that consents costs, the string decoded once (at warm-up) and then cached.
``--distinct-browsers`` gives each cookie match its own exchange cookie (a different browser
per request, as real traffic is), where ``cookie_match`` otherwise repeats one cookie; the
buyer monitor's frequency-capping checks then touch a new browser record every time.

``google_hm``, ``buyer_match`` and ``dmp_callback`` are the durable writes of the HTTP
benchmark (``bench/lua/unique.lua``): each request a new browser and a new token, so each
writes a new key (a hosted match on the exchange's ``/pixel``, the buyer's ``/match``, the
DMP's ``/callback/<partner>``), acknowledged after its group commit under ``--durability ack``.

``bid`` POSTs the body the HTTP benchmark sends (``http_bench.bid_request_body``: the IAB's
simple banner with ``user.id`` = ``KNOWN_GID``) after matching that gid through ``/match``,
as the HTTP benchmark's preflight does, so every look-up hits.

Use it to measure a hot-path change before/after: it is far less noisy than wrk on a shared
machine. ``--compare-metrics`` alternates rounds between the metrics as served (shared across
workers, ``web/counters.py``, with each answer counted and timed) and per-process dicts as
they were before, in the same process: their difference is what the shared metrics cost.
Background store work started by a request (monitoring) is drained at the end and counted in
the CPU time; the run ends with the buyer monitor's checks: recorded, applied, dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench
import servers

from cookiematch.config import load_config
from cookiematch.exchange.monitoring import BuyerMonitor, Count
from cookiematch.roots.buyer import BuyerServer
from cookiematch.roots.dmp import DmpServer
from cookiematch.roots.exchange import ExchangeServer
from cookiematch.web import rsgi
from cookiematch.web.counters import LabelledCounter
from cookiematch.web.exchange import metrics as exchange_metrics
from cookiematch.web.heap import settle_heap
from cookiematch.web.http import Headers
from cookiematch.web.rsgi import RSGIAdapter

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
ACCEPT = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(ALPHABET[n % 64])
        n //= 64
    return "".join(reversed(out))


class Scope:
    """The attributes of granian's RSGI scope the adapter reads."""

    __slots__ = ("client", "headers", "method", "path", "proto", "query_string", "scheme")

    def __init__(
        self,
        path: str,
        query: str,
        cookie: str,
        *,
        method: str = "GET",
        headers: Headers | None = None,
    ) -> None:
        self.proto = "http"
        self.method = method
        self.path = path
        self.query_string = query
        self.scheme = "http"
        self.client = "127.0.0.1:50000"
        if headers is None:
            headers = Headers(
                [("host", "127.0.0.1"), ("user-agent", UA), ("accept", ACCEPT), ("cookie", cookie)]
            )
        self.headers = headers


class Proto:
    """Gives the request body (``await proto()``); records the status of the response."""

    __slots__ = ("body", "status")

    def __init__(self, body: bytes = b"") -> None:
        self.body = body
        self.status = 0

    async def __call__(self) -> bytes:
        return self.body

    def response_empty(self, status: int, headers: Any) -> None:
        self.status = status

    def response_bytes(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status


COOKIE = "_ga=GA1.2.1234567890.1700000000; cm_id=AAECAwQFBgcICQoLDA0ODw; lang=en"


def distinct_cookie(i: int) -> str:
    """The ``i``-th browser's cookie header (16 bytes of id, one per ``i``)."""
    return f"_ga=GA1.2.1234567890.1700000000; cm_id=AAAdistAAAA{b64(i, 8)}cmA; lang=en"


def cookie_match(i: int) -> Scope:
    return Scope("/pixel", "google_nid=ad_network_xyz&google_cm&p1=v1&p2=v2", COOKIE)


def cookie_match_distinct(i: int) -> Scope:
    return Scope("/pixel", "google_nid=ad_network_xyz&google_cm&p1=v1&p2=v2", distinct_cookie(i))


TC_STRING = (  # @iabtcf/core reads it alike: purposes 1-10, 201 vendor consents up to 1200
    "CP1R2oAP1VJkAEsAHDFRCMEoAP_AAEPAAAYgJYICAAIEAAwkAAAiAASQSAuuESYwCBUGAYYEBWABACUAUQICAgAE"
    "ojQAAKEiAAICkAIIAAAAMUAECCEAAlAAIEBgIAAIiAIAAYEIMQAAmAAEiMAgBAAAAAI0DBAECCMgIICAQAgCRi0oA"
    "AAAgoQQQQIACAIEAgwBAYAAwCSJBQBTAAAEAgUAAEECCYBCARoAKUBOARIURQQSwCEAAAgEIAGgAAAEAAAAEBSAA"
    "AAAEAiAAAEAwIAAAAwAEDAACIAgTAIIAAQRAAgCAAIWQYBAASAAIQEAAABQABAgAGAAAAACEAAAAgAAAAAAAAAAY"
    "CEAIAGAKBEAAEIAAAAAACAAQBQAAAAASAAAAQAIICAEAEAQgEKgKBAAAIAAaCMJAFgBBATAAAhAYACgJAAAAAAAQ"
    "AAA"
)


TC_QUERY = f"google_nid=ad_network_xyz&google_cm&p1=v1&p2=v2&gdpr=1&gdpr_consent={TC_STRING}"


def cookie_match_tc(i: int) -> Scope:
    return Scope("/pixel", TC_QUERY, COOKIE)


def cookie_match_tc_distinct(i: int) -> Scope:
    return Scope("/pixel", TC_QUERY, distinct_cookie(i))


def hosted_match(i: int) -> Scope:
    c = b64(i, 8)
    return Scope(
        "/pixel",
        f"google_nid=cookie-monster&google_cm&google_hm={c}benchAAA",
        f"_ga=GA1.2.1234567890.1700000000; cm_id=AAAbenchAAA{c}bmA; lang=en",
    )


def unique(path: str, cookie: str) -> Callable[[int], Scope]:
    """Requests that each write something new, as ``bench/lua/unique.lua`` makes them: in the
    templates ``@ID@`` becomes a browser ID (22 characters) and ``@N@`` a token (16), both
    unique per request."""

    def scope(i: int) -> Scope:
        c = b64(i, 8)
        browser, token = f"AAAbenchAAA{c}bmA", f"{c}AAAAAAbk"
        query = path.replace("@ID@", browser).replace("@N@", token)
        header = "_ga=GA1.2.1234567890.1700000000; " + cookie.replace("@ID@", browser)
        route, _, query = query.partition("?")
        return Scope(route, query, header)

    return scope


google_hm = unique("/pixel?google_nid=cookie-monster&google_cm&google_hm=@N@", "cm_id=@ID@")
buyer_match = unique("/match?google_gid=@N@&google_cver=1", "buyer_uid=@ID@")
dmp_callback = unique("/callback/analytics?c=shop&uid=@N@", "dmp_id=@ID@")


def bid_headers(body: bytes) -> Headers:
    """What wrk sends with ``bench/lua/bid.lua``."""
    return Headers(
        [
            ("host", "127.0.0.1"),
            ("content-type", "application/json"),
            ("x-openrtb-version", "2.6"),
            ("content-length", str(len(body))),
        ]
    )


Request = tuple[Scope, bytes]  # a scope and the body ``await proto()`` gives
Make = Callable[[int], Request]


def query_only(scope: Callable[[int], Scope]) -> Callable[[RSGIAdapter, Path], Awaitable[Make]]:
    async def setup(adapter: RSGIAdapter, directory: Path) -> Make:
        return lambda i: (scope(i), b"")

    return setup


async def bid(adapter: RSGIAdapter, directory: Path) -> Make:
    """The HTTP benchmark's body and preflight: ``KNOWN_GID`` matched through ``/match``
    first, so the look-up hits; then the same static POST every time, as wrk sends it."""
    body = http_bench.bid_request_body(directory).read_bytes()
    request = (Scope("/bid", "", "", method="POST", headers=bid_headers(body)), body)
    seed = Proto()
    query = f"google_gid={http_bench.KNOWN_GID}&google_cver=1"
    await adapter(Scope("/match", query, f"buyer_uid={http_bench.BUYER_UID}"), seed)
    answer = Proto(body)
    await adapter(request[0], answer)
    if (seed.status, answer.status) != (200, 200):
        raise SystemExit(f"bid preflight: /match {seed.status}, /bid {answer.status}")
    return lambda i: request


ENDPOINTS: dict[str, tuple[str, Callable[[RSGIAdapter, Path], Awaitable[Make]]]] = {
    "cookie_match": ("exchange", query_only(cookie_match)),
    "cookie_match_tc": ("exchange", query_only(cookie_match_tc)),
    "hosted_match": ("exchange", query_only(hosted_match)),
    "bid": ("buyer", bid),
    "google_hm": ("exchange", query_only(google_hm)),
    "buyer_match": ("buyer", query_only(buyer_match)),
    "dmp_callback": ("dmp", query_only(dmp_callback)),
}
DISTINCT: dict[str, tuple[str, Callable[[RSGIAdapter, Path], Awaitable[Make]]]] = {
    "cookie_match": ("exchange", query_only(cookie_match_distinct)),
    "cookie_match_tc": ("exchange", query_only(cookie_match_tc_distinct)),
}


SERVERS: dict[str, type[BuyerServer | DmpServer | ExchangeServer]] = {
    "buyer": BuyerServer,
    "dmp": DmpServer,
    "exchange": ExchangeServer,
}


def build_server(
    role: str, directory: Path, store_url: str, durability: str
) -> BuyerServer | DmpServer | ExchangeServer:
    config_path = servers.write_config(directory, role, 0, store_url, durability)
    return SERVERS[role](load_config(config_path))


MONITORED_NIDS = ("ad_network_xyz", "cookie-monster")  # the buyers the endpoints match to


async def report_checks(monitor: BuyerMonitor) -> str:
    """The frequency-capping checks of the whole run (warm-up included): how many match tags
    and returned pushes recorded one, how many were dropped, how many violations were found."""
    totals: Counter[str] = Counter()
    for nid in MONITORED_NIDS:
        totals.update((await monitor.stats(nid)).counts)
    recorded = totals[Count.MATCH_TAGS] + totals[Count.PUSHES_RETURNED]
    if not recorded:
        return ""
    dropped = totals[Count.CHECKS_DROPPED]
    return (
        f"\n   monitor checks: {recorded:,} recorded, {recorded - dropped:,} applied"
        f" ({100 * (recorded - dropped) / recorded:.1f} %), {dropped:,} dropped,"
        f" {totals[Count.FREQUENCY_CAP_VIOLATIONS]:,} frequency-cap violations"
    )


def per_process_metrics(server: BuyerServer | DmpServer | ExchangeServer) -> Callable[[bool], None]:
    """A switch between the shared metrics (True) and the per-process dicts they replaced,
    with no timing of answers (False)."""
    stats = server.stats._counts if isinstance(server, BuyerServer) else None
    served = (rsgi.record, server.policy.counts, stats)
    counters = [c for c in vars(exchange_metrics).values() if isinstance(c, LabelledCounter)]

    def dict_inc(values: dict[Any, float]) -> Callable[..., None]:
        def inc(labels: Any, amount: float = 1) -> None:
            values[labels] = values.get(labels, 0) + amount

        return inc

    def switch(shared: bool) -> None:
        rsgi.record = served[0] if shared else (lambda route, status, seconds: None)  # type: ignore[assignment]
        server.policy.counts = served[1] if shared else Counter()
        if isinstance(server, BuyerServer):
            counts = served[2] if shared and served[2] is not None else Counter()
            server.stats.__init__(counts)  # type: ignore[misc]  # in place: the bidder holds it
        for counter in counters:
            if shared:
                vars(counter).pop("inc", None)
            else:
                counter.inc = dict_inc({})  # type: ignore[method-assign]

    return switch


async def drive(args: argparse.Namespace, directory: Path) -> None:
    role, setup = ENDPOINTS[args.endpoint]
    if args.distinct_browsers:
        role, setup = DISTINCT.get(args.endpoint, (role, setup))
    db = f"sqlite:///{directory}/{role}.db"
    store_url = db if args.store == "sqlite" else args.store
    server = build_server(role, directory, store_url, args.durability)
    app = server.app
    adapter = RSGIAdapter(app)
    await app.startup()
    await settle_heap()  # a served worker's last start-up hook (web/server.py)
    make = await setup(adapter, directory)
    monitor = getattr(server, "monitor", None)
    if args.no_monitor and isinstance(server, ExchangeServer):  # the match tag without it
        assert server.service is not None
        server.service._monitor = None
        if server.service.common is not None:
            server.service.common.monitor = None
    counter = itertools.count()
    statuses: dict[int, int] = {}
    stop_at = 0.0
    loop_cpu = 0.0  # the event loop's thread alone, over the measured rounds

    async def loop() -> None:
        while time.perf_counter() < stop_at:
            scope, body = make(next(counter))
            proto = Proto(body)
            await adapter(scope, proto)
            statuses[proto.status] = statuses.get(proto.status, 0) + 1

    async def phase(seconds: float) -> tuple[int, float, float]:
        nonlocal stop_at, loop_cpu
        statuses.clear()
        cpu0, wall0, loop0 = time.process_time(), time.perf_counter(), time.thread_time()
        stop_at = wall0 + seconds
        await asyncio.gather(*(loop() for _ in range(args.concurrency)))
        if monitor is not None and monitor.pending_checks:
            backlog, t = monitor.pending_checks, time.perf_counter()
            await monitor.drain()
            print(
                f"   monitor backlog at the end: {backlog:,} checks,"
                f" drained in {time.perf_counter() - t:.2f} s"
            )
        loop_cpu += time.thread_time() - loop0
        return sum(statuses.values()), time.process_time() - cpu0, time.perf_counter() - wall0

    await phase(min(1.0, args.seconds))  # warm-up
    loop_cpu = 0.0
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled", interval=0.0005)
        profiler.start()
    rounds, answered = [], Counter[int]()
    if args.compare_metrics:
        switch = per_process_metrics(server)
        compared: dict[bool, list[tuple[int, float, float]]] = {True: [], False: []}
        for round_ in range(args.rounds):
            for shared in (True, False) if round_ % 2 else (False, True):  # neither always first
                switch(shared)
                compared[shared].append(await phase(args.seconds / args.rounds / 2))
        switch(True)
        await app.shutdown()
        for shared, label in ((False, "per-process dicts"), (True, "shared metrics")):
            n = sum(count for count, _, _ in compared[shared])
            cpu = sum(spent for _, spent, _ in compared[shared])
            best = min(1e6 * spent / count for count, spent, _ in compared[shared] if count)
            print(f"{args.endpoint:<15} {label:<18} {1e6 * cpu / n:6.2f} µs/req"
                  f" (best of {args.rounds} rounds {best:6.2f})")  # fmt: skip
        return
    batched = server.store.batches if server.store is not None else (0, 0)
    for _ in range(args.rounds):
        rounds.append(await phase(args.seconds / args.rounds))
        answered.update(statuses)
    if server.store is not None:
        after = server.store.batches
        batched = after[0] - batched[0], after[1] - batched[1]
    n, cpu, wall = (sum(values) for values in zip(*rounds, strict=True))
    if profiler is not None:
        profiler.stop()
        html = args.profile.endswith(".html")
        report = profiler.output_html() if html else profiler.output_text(unicode=True)
        Path(args.profile).write_text(report)
    checks = ""
    if isinstance(monitor, BuyerMonitor) and not args.no_monitor:
        checks = await report_checks(monitor)
    await app.shutdown()
    best = min(1e6 * spent / count for count, spent, _ in rounds if count)
    print(
        f"{args.endpoint:<15} {args.store:<8} {n / cpu:>9,.0f} req/CPU-s"
        f"  {1e6 * cpu / n:6.1f} µs/req"
        + (f" (best of {args.rounds} rounds {best:5.1f})" if args.rounds > 1 else "")
        + f"  loop {1e6 * loop_cpu / n:5.1f} µs/req"
        + (f"  {batched[1] / batched[0]:.1f} writes a commit" if batched[0] else "")
        + f"   {n / wall:>9,.0f} req/s wall   statuses {dict(sorted(answered.items()))}"
        + checks
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), action="append")
    parser.add_argument("--store", default="sqlite", help="sqlite, or a redis:// URL")
    parser.add_argument("--durability", default="ack", choices=("ack", "async"))
    parser.add_argument(
        "--no-monitor", action="store_true", help="detach the buyer monitor (an experiment)"
    )
    parser.add_argument(
        "--distinct-browsers",
        action="store_true",
        help="a different exchange cookie per request (cookie_match, cookie_match_tc)",
    )
    parser.add_argument("--profile", default=None, help="pyinstrument report (.html, else text)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="split the run into rounds and also report the best round's µs/req (steadier"
        " than the mean on a shared machine)",
    )
    parser.add_argument(
        "--compare-metrics",
        action="store_true",
        help="alternate rounds: the shared metrics as served, and per-process dicts as before",
    )
    parser.add_argument(
        "--loop",
        default="asyncio",
        choices=("asyncio", "uvloop"),
        help="the event loop (granian's --loop auto serves on uvloop)",
    )
    args = parser.parse_args()
    endpoints = args.endpoint or sorted(ENDPOINTS)
    for endpoint in endpoints:
        args.endpoint = endpoint
        with tempfile.TemporaryDirectory() as tmp, contextlib.suppress(KeyboardInterrupt):
            os.environ.pop("COOKIEMATCH_CONFIG", None)
            if args.loop == "uvloop":
                import uvloop

                uvloop.run(drive(args, Path(tmp)))
            else:
                asyncio.run(drive(args, Path(tmp)))


if __name__ == "__main__":
    main()
