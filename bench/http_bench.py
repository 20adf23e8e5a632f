"""The HTTP benchmark: cookiematch's hot endpoints against nginx's static 302, same wrk load.

    .venv/bin/python bench/http_bench.py [--duration 3] [--rounds 3] [--connections 64]
        [--stores sqlite,redis] [--workers 1,2] [--roles exchange,buyer,dmp]
        [--nginx-workers auto,1] [--soak 30] [--out var/bench] [--no-ceiling]
        [--loop uvloop] [--redis-aof everysec] [--no-edge] [--only "cookie match"]
        [--warmup 1]

For every store x worker count x role it starts ``cookiematch serve`` on a generated config,
then for each round and each endpoint runs wrk against nginx and against us *with the same Lua
script* (so the client does the same work), alternating. Every server it starts (ours, the
bare-granian ceiling, the edge) is first warmed by one wrk run of ``--warmup`` seconds per
endpoint, not counted: a server's first second after its start has a max latency of its own,
the minimal apps' and bare granian's as well as ours (``bench/first_seconds.py`` measures
it); the warm-up's figures are reported apart. An endpoint's ratio is its median
req/s over the rounds divided by nginx's median with the same script in the same block. The
first ``--nginx-workers`` value is the reference; the others are measured once per round with
the one-cookie cookie-match script, for information.

The cookie match runs twice: with one exchange cookie repeated, and with a different browser
per request (``lua/unique.lua``: a new, well-formed exchange cookie each time, as real traffic
is). Each of our cookie-match runs reads the server's ``/metrics`` before and after, so the
table shows that the answers were redirects to the buyer, not the set-cookie hop a rejected
cookie gets. Write endpoints get a different browser ID per request too; after each block the
keys they wrote are counted in the store and compared with the requests wrk saw answered (a
2-worker run shows that no write is lost). Each block records the workers' peak RSS (VmHWM).

After each exchange round of the first store, granian serving nginx's 302 from a bare RSGI
callable is measured next to nginx: the ceiling of any Python handler on this stack. Every
row gets its ratio to that ceiling (its ratio to nginx over the ceiling's, same worker count)
and a verdict against ``TARGETS``. For each worker count of the first store, the edge
(``cookiematch edge render``: nginx + Lua in front of the exchange) is measured beside nginx's
static 302, bare granian and the Python path, round by round (``EDGE_TARGET``). ``--soak``
runs the cookie match for that many seconds on 1 worker and samples VmRSS every few seconds.

Writes ``result.json`` and ``result.md`` to ``--out/<timestamp>/`` (and ``--out/latest.*``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers
from servers import ROOT, Service, WrkResult

LUA = ROOT / "bench" / "lua"
OPENRTB = Path(os.environ.get("OPENRTB_EXAMPLES", "/work/shared/openrtb-2.6-examples"))
KNOWN_GID = "CAESEJpPHn1dJmHCBbQZcIgIV4Y"  # matched before the /bid runs
BUYER_UID = "AAECAwQFBgcICQoLDA0ODw"


@dataclass(frozen=True)
class Endpoint:
    """One benchmarked request: its wrk script and arguments, and what it leaves behind."""

    name: str
    role: str
    script: str
    args: Callable[[int, Path], list[str]] = lambda run, work: []
    counts_prefix: str | None = None  # each request writes one new key under this prefix
    redirects_nid: str | None = None  # each request is a cookie match redirecting this buyer
    kind: str = "cookie match"  # which target applies: cookie match, durable write, bid


def _unique(path: str, cookie: str) -> Callable[[int, Path], list[str]]:
    return lambda run, work: [str(run), path, cookie]


COOKIE_MATCH_PATH = "/pixel?google_nid=ad_network_xyz&google_cm&p1=v1&p2=v2"
ONE_COOKIE = Endpoint(
    "exchange /pixel cookie match, one cookie",
    "exchange",
    "cookie_match.lua",  # COOKIE_MATCH_PATH with one exchange cookie, a static request
    redirects_nid="ad_network_xyz",
)
DISTINCT_BROWSERS = Endpoint(
    "exchange /pixel cookie match, distinct browsers",
    "exchange",
    "unique.lua",
    _unique(COOKIE_MATCH_PATH, "cm_id=@ID@; lang=en"),
    redirects_nid="ad_network_xyz",
)
HOSTED_MATCH = Endpoint(
    "exchange /pixel google_hm",
    "exchange",
    "unique.lua",
    _unique("/pixel?google_nid=cookie-monster&google_cm&google_hm=@N@", "cm_id=@ID@"),
    counts_prefix="hm:",
    kind="durable write",
)
ENDPOINTS = [
    ONE_COOKIE,
    DISTINCT_BROWSERS,
    HOSTED_MATCH,
    Endpoint(
        "buyer /match",
        "buyer",
        "unique.lua",
        _unique("/match?google_gid=@N@&google_cver=1", "buyer_uid=@ID@"),
        counts_prefix="bm:finest-dsp:g:",
        kind="durable write",
    ),
    Endpoint("buyer POST /bid", "buyer", "bid.lua", kind="bid"),
    Endpoint(
        "dmp /callback/<partner>",
        "dmp",
        "unique.lua",
        _unique("/callback/analytics?c=shop&uid=@N@", "dmp_id=@ID@"),
        counts_prefix="dmp:pid:{analytics:",
        kind="durable write",
    ),
]


@dataclass(frozen=True)
class Target:
    """What an endpoint kind must reach on the 2-core machine, 64 connections, 1 and 2
    workers: req/s as a fraction of nginx's and of the bare-granian ceiling's (same run),
    wrk's p99 (median over the rounds) and its max latency (the worst of the rounds)."""

    nginx: float
    ceiling: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None

    def misses(
        self, ratio: float, to_ceiling: float | None, p99_ms: float, max_ms: float
    ) -> tuple[list[str], list[str]]:
        """The criteria missed, and those that could not be checked (no ceiling measured)."""
        missed, unchecked = [], []
        if not ratio >= self.nginx:
            missed.append(f"nginx {ratio:.2f} < {self.nginx:.2f}")
        if self.ceiling is not None:
            if to_ceiling is None:
                unchecked.append("ceiling")
            elif not to_ceiling >= self.ceiling:
                missed.append(f"ceiling {to_ceiling:.2f} < {self.ceiling:.2f}")
        if self.p99_ms is not None and not p99_ms <= self.p99_ms:
            missed.append(f"p99 {p99_ms:.1f} > {self.p99_ms:g} ms")
        if self.max_ms is not None and not max_ms <= self.max_ms:
            missed.append(f"max {max_ms:.1f} > {self.max_ms:g} ms")
        return missed, unchecked

    def describe(self) -> str:
        parts = [f"≥ {self.nginx:.2f} of nginx"]
        if self.ceiling is not None:
            parts.append(f"≥ {self.ceiling:.2f} of the ceiling")
        if self.p99_ms is not None:
            parts.append(f"p99 ≤ {self.p99_ms:g} ms")
        if self.max_ms is not None:
            parts.append(f"max ≤ {self.max_ms:g} ms")
        return ", ".join(parts)


TARGETS = {
    "cookie match": Target(nginx=0.30, ceiling=0.75, p99_ms=5.0, max_ms=20.0),
    "durable write": Target(nginx=0.15),
    "bid": Target(nginx=0.20),
}


# --- environment ------------------------------------------------------------------------------


EDGE_TARGET = {"nginx": 0.60, "p99_ms": 3.0, "proxied_cost": 1.15}
"""The edge (docs/edge.md): its cookie match at least this fraction of nginx's static 302 with
a p99 at most this; a request it proxies (google_hm) costs at most this factor of the same
request sent to the server directly (req/s direct / req/s through the edge)."""
EDGE_RUNS = (  # (key, what is measured) in each round, in this order
    ("nginx", "nginx static 302"),
    ("edge", "edge cookie match, one cookie"),
    ("python", "Python cookie match, one cookie"),
    ("granian", "bare granian 302"),
    # the distinct browsers' wrk script costs wrk more per request than the static one: the
    # edge and the Python path with it are compared with nginx's static 302 under it too
    ("nginx_distinct", "nginx static 302, distinct browsers' requests"),
    ("edge_distinct", "edge cookie match, distinct browsers"),
    ("python_distinct", "Python cookie match, distinct browsers"),
    ("edge_hm", "google_hm through the edge"),
    ("python_hm", "google_hm to the server"),
)


def machine() -> dict[str, object]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def version(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except OSError:
            return "?"
        return (
            (out.stdout or out.stderr).strip().splitlines()[0]
            if (out.stdout or out.stderr)
            else "?"
        )

    import granian

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "granian": granian.__version__,
        "nginx": version([servers.NGINX, "-v"]),
        "wrk": version([servers.WRK, "-v"]),
        "redis": version([servers.REDIS_SERVER, "--version"]),
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
    }


def bid_request_body(work: Path) -> Path:
    """IAB's simple-banner example with ``user.id`` set to a gid the buyer has matched."""
    source = OPENRTB / "request-1-simple-banner.json"
    request = json.loads(source.read_text())
    request.setdefault("user", {})["id"] = KNOWN_GID
    request["tmax"] = 120
    path = work / "bid-request.json"
    path.write_text(json.dumps(request))
    return path


def fetch(url: str, *, cookie: str = "", body: bytes | None = None) -> tuple[int, str]:
    """Status and a short description of one request (redirects not followed)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    request = urllib.request.Request(url, data=body, headers={"Cookie": cookie} if cookie else {})
    if body is not None:
        request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=5) as response:
            status, headers, payload = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, headers, payload = exc.code, exc.headers, exc.read()
    return status, headers.get("Location") or payload[:80].decode("latin-1")


def preflight(service: Service) -> dict[str, str]:
    """One request per endpoint of the role (and the buyer's seed match): what it answers."""
    base = f"http://127.0.0.1:{service.port}"
    seen: dict[str, str] = {}
    if service.role == "exchange":
        from cookiematch.protocol.cookies import format_browser_id

        cookie = f"cm_id={BUYER_UID}"
        seen["cookie match"] = "{} {}".format(*fetch(base + COOKIE_MATCH_PATH, cookie=cookie))
        new_browser = f"cm_id={format_browser_id(os.urandom(16))}"
        seen["cookie match, new browser"] = "{} {}".format(
            *fetch(base + COOKIE_MATCH_PATH, cookie=new_browser)
        )
        seen["google_hm"] = "{} {}".format(
            *fetch(
                f"{base}/pixel?google_nid=cookie-monster&google_cm&google_hm=AAAAbenchAAA",
                cookie=cookie,
            )
        )
    elif service.role == "buyer":
        seen["match (seed)"] = "{} {}".format(
            *fetch(
                f"{base}/match?google_gid={KNOWN_GID}&google_cver=1",
                cookie=f"buyer_uid={BUYER_UID}",
            )
        )
        body = (service.config.parent / "bid-request.json").read_bytes()
        seen["bid"] = "{} {}".format(*fetch(f"{base}/bid", body=body))
    elif service.role == "dmp":
        seen["callback"] = "{} {}".format(
            *fetch(
                f"{base}/callback/analytics?c=shop&uid=benchpreflight", cookie=f"dmp_id={BUYER_UID}"
            )
        )
    return seen


async def _count_keys(store_url: str, prefix: str) -> int:
    """Plain keys under ``prefix`` plus the fields of the field maps under it."""
    from cookiematch.storage import open_store

    store = open_store(store_url)
    try:
        await store.start()
        n = 0
        async for _ in store.scan(prefix):
            n += 1
        async for _, fields in store.scan_maps(prefix):  # bucketed tables: one field per entry
            n += len(fields)
        return n
    finally:
        await store.close()


def count_keys(store_url: str, prefix: str) -> int:
    return asyncio.run(_count_keys(store_url, prefix))


def report_counts(endpoints: Sequence[Endpoint], rows: Sequence[Row], url: str) -> None:
    """Each row's redirects and the keys its endpoint wrote, against the requests answered."""
    for endpoint, row in zip(endpoints, rows, strict=True):
        answered = sum(r.requests for r in row.ours)
        if row.redirects is not None:
            print(
                f"   {endpoint.name}: {row.redirects:,} redirects to "
                f"{endpoint.redirects_nid} for {answered:,} answered requests",
                flush=True,
            )
        if endpoint.counts_prefix:
            row.keys_written = count_keys(url, endpoint.counts_prefix)
            print(
                f"   {endpoint.name}: {row.keys_written:,} keys under "
                f"{endpoint.counts_prefix!r} for {answered:,} answered requests",
                flush=True,
            )


FOLD_WAIT = 1.5
"""Seconds after a run before its redirects are read: a worker folds its cookie matches'
tally into the counters at each monitor flush (about once a second), the one answering the
scrape at once, the others within that."""


def pixel_redirects(port: int, nid: str) -> int:
    """The match tags of buyer ``nid`` a server answered with the redirect to that buyer
    (``cookiematch_pixel_outcomes`` of its ``/metrics``, added up over its workers): an
    exchange cookie the server did not accept would get the set-cookie hop instead."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    wanted = {"nid": nid, "outcome": "redirect"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "cookiematch_pixel_outcomes_total" and sample.labels == wanted:
                return int(sample.value)
    return 0


# --- a block: one store x workers x role ------------------------------------------------------


@dataclass
class Row:
    """One endpoint in one block: every run of ours and of the reference nginx."""

    endpoint: str
    kind: str
    store: str
    workers: int
    ours: list[WrkResult] = field(default_factory=list)
    nginx: list[WrkResult] = field(default_factory=list)
    rss_peak_kb: list[int] = field(default_factory=list)
    keys_written: int | None = None
    redirects: int | None = None  # cookie matches: redirects to the buyer during our runs
    preflight: str = ""
    warmup: WrkResult | None = None  # the run after the start, not in the figures

    @staticmethod
    def median(runs: list[WrkResult], attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs) if runs else float("nan")

    def summary(self, ceiling: float | None) -> dict[str, object]:
        """``ceiling``: the bare-granian ceiling's ratio to nginx for this worker count (None
        when it was not measured); this row's ratio to it is its ratio to nginx over that."""
        rps, ref = self.median(self.ours, "rps"), self.median(self.nginx, "rps")
        ratios = [o.rps / n.rps for o, n in zip(self.ours, self.nginx, strict=False)]
        requests = sum(r.requests for r in self.ours)
        warmup = self.warmup
        # the keys a write endpoint left include the warm-up's: its answers are counted too
        answered = requests + (warmup.requests if warmup and self.keys_written is not None else 0)
        ratio = rps / ref
        to_ceiling = round(ratio / ceiling, 3) if ceiling else None
        p99_ms = self.median(self.ours, "p99_ms")
        max_ms = max((r.max_ms for r in self.ours), default=float("nan"))
        target = TARGETS[self.kind]
        missed, unchecked = target.misses(ratio, to_ceiling, p99_ms, max_ms)
        return {
            "endpoint": self.endpoint,
            "kind": self.kind,
            "store": self.store,
            "workers": self.workers,
            "rps": round(rps),
            "p50_ms": round(self.median(self.ours, "p50_ms"), 3),
            "p99_ms": round(p99_ms, 3),
            "max_ms": round(max_ms, 3),
            "nginx_rps": round(ref),
            "nginx_p50_ms": round(self.median(self.nginx, "p50_ms"), 3),
            "nginx_p99_ms": round(self.median(self.nginx, "p99_ms"), 3),
            "ratio": round(ratio, 3),
            "ratio_min": round(min(ratios), 3) if ratios else None,
            "ratio_max": round(max(ratios), 3) if ratios else None,
            "ratio_to_ceiling": to_ceiling,
            "target": target.nginx,
            "targets": asdict(target),
            "verdict": "fail" if missed else "pass",
            "missed": missed,
            "unchecked": unchecked,
            "errors": sum(r.non_3xx + r.socket_errors for r in self.ours),
            "requests": requests,
            "answered": answered,
            "warmup": asdict(warmup) if warmup else None,
            "keys_written": self.keys_written,
            "redirects": self.redirects,
            "rss_peak_mb": round(max(self.rss_peak_kb) / 1024, 1) if self.rss_peak_kb else None,
            "preflight": self.preflight,
            "runs": [asdict(r) for r in self.ours],
            "nginx_runs": [asdict(r) for r in self.nginx],
        }


def describe(run: WrkResult) -> str:
    """One wrk run's rate and latencies, as the rounds print them."""
    return (
        f"{run.rps:>9,.0f} req/s p50 {run.p50_ms:6.2f} p99 {run.p99_ms:6.2f} "
        f"max {run.max_ms:6.1f} ms"
    )


def _reference(key: str) -> str:
    """The EDGE_RUNS key ``key``'s req/s are divided by: nginx's static 302 under the same
    wrk script."""
    return "nginx_distinct" if key.endswith("_distinct") and key != "nginx_distinct" else "nginx"


def edge_summary(
    workers: int, runs: dict[str, list[WrkResult]], cpu: dict[str, list[float]]
) -> dict[str, Any]:
    """Medians per measured thing, the ratios of each round (same round, side by side), the
    CPU per request of the processes answering (nginx's workers for nginx, the edge's workers
    and the server's for the edge, the server's for the Python path), and the verdict
    against ``EDGE_TARGET``."""

    def median(key: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs[key])

    def ratios(key: str, ref: str) -> list[float]:
        return [round(a.rps / b.rps, 3) for a, b in zip(runs[key], runs[ref], strict=True)]

    summary: dict[str, Any] = {"workers": workers}
    for key, label in EDGE_RUNS:
        summary[key] = {
            "label": label,
            "rps": round(median(key, "rps")),
            "p50_ms": round(median(key, "p50_ms"), 3),
            "p99_ms": round(median(key, "p99_ms"), 3),
            "non_3xx": sum(r.non_3xx for r in runs[key]),
            "cpu_us_per_request": statistics.median(cpu[key]) if cpu[key] else None,
            "ratio_to_nginx": [] if key.endswith("_hm") else ratios(key, _reference(key)),
        }
    cost = [round(1 / r, 3) for r in ratios("edge_hm", "python_hm")]
    summary["proxied_cost"] = cost
    hm_cpu = [round(a / b, 3) for a, b in zip(cpu["edge_hm"], cpu["python_hm"], strict=True) if b]
    summary["proxied_cpu_cost"] = hm_cpu
    edge_ratio = statistics.median(summary["edge"]["ratio_to_nginx"])
    missed = []
    if edge_ratio < EDGE_TARGET["nginx"]:
        missed.append(f"edge {edge_ratio:.2f} of nginx < {EDGE_TARGET['nginx']:.2f}")
    if summary["edge"]["p99_ms"] > EDGE_TARGET["p99_ms"]:
        missed.append(f"edge p99 {summary['edge']['p99_ms']} ms > {EDGE_TARGET['p99_ms']}")
    if statistics.median(cost) > EDGE_TARGET["proxied_cost"]:
        missed.append(f"proxied cost {statistics.median(cost):.2f} > 1.15")
    summary["verdict"] = "met" if not missed else "missed: " + "; ".join(missed)
    return summary


def ceiling_summary(measured: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per worker count, the medians of the bare-granian runs (req/s, ratio to nginx, p99)
    and the worst max latency."""
    by_workers: dict[int, list[dict[str, Any]]] = {}
    for run in measured:
        by_workers.setdefault(run["workers"], []).append(run)

    def median(runs: list[dict[str, Any]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    return {
        workers: {
            "workers": workers,
            "rounds": len(runs),
            "rps": round(median(runs, "rps")),
            "nginx_rps": round(median(runs, "nginx_rps")),
            "ratio": round(median(runs, "ratio"), 3),
            "p99_ms": round(median(runs, "p99_ms"), 3),
            "max_ms": round(max(run["max_ms"] for run in runs), 3),
        }
        for workers, runs in sorted(by_workers.items())
    }


def store_url_for(kind: str, work: Path, redis_port: int | None, db: int) -> str:
    if kind == "sqlite":
        return f"sqlite:///{work}/store.db"
    assert redis_port is not None
    return f"redis://127.0.0.1:{redis_port}/{db}"


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.rows: list[Row] = []
        self.nginx_extra: list[dict[str, object]] = []
        self.ceiling: list[dict[str, Any]] = []
        self.edge: list[dict[str, Any]] = []
        self.run_number = 0
        self.redis_db = 0

    def wrk(
        self, port: int, endpoint: Endpoint, directory: Path, duration: float | None = None
    ) -> WrkResult:
        self.run_number += 1
        return servers.wrk(
            port,
            LUA / endpoint.script,
            duration=self.args.duration if duration is None else duration,
            connections=self.args.connections,
            threads=self.args.threads,
            args=endpoint.args(self.run_number, directory),
            env={"BENCH_BODY": str(directory / "bid-request.json")},
        )

    def block(self, store: str, workers: int, role: str, nginx_ports: dict[str, int]) -> None:
        endpoints = [
            e
            for e in ENDPOINTS
            if e.role == role and (not self.args.only or any(o in e.name for o in self.args.only))
        ]
        self.redis_db += 1
        directory = self.work / f"{store}-{workers}w-{role}"
        directory.mkdir(parents=True)
        shutil.copy(self.work / "bid-request.json", directory / "bid-request.json")
        url = store_url_for(store, directory, self.redis_port, self.redis_db % 16)
        label = f"{store} x {workers} worker{'s' if workers > 1 else ''}, {role}"
        print(f"\n== {label}  ({url})", flush=True)
        rows = [Row(e.name, e.kind, store, workers) for e in endpoints]
        ref = self.args.nginx_workers[0]
        with servers.cookiematch(
            directory,
            url,
            role=role,
            workers=workers,
            durability=self.args.durability,
            loop=self.args.loop,
            extra_path=self.args.extra_path,
        ) as service:
            seen = preflight(service)
            for key, value in seen.items():
                print(f"   preflight {key}: {value}", flush=True)
            for row in rows:
                row.preflight = "; ".join(f"{k}: {v}" for k, v in seen.items())
            for endpoint, row in zip(endpoints, rows, strict=True):
                row.warmup = self.warm(service.port, endpoint, directory)
                if row.warmup is not None:
                    print(f"   warm-up {endpoint.name:<46} {describe(row.warmup)}", flush=True)
            for rnd in range(self.args.rounds):
                for endpoint, row in zip(endpoints, rows, strict=True):
                    row.nginx.append(self.wrk(nginx_ports[ref], endpoint, directory))
                    row.ours.append(self.wrk_counted(service.port, endpoint, directory, row))
                    row.rss_peak_kb += [
                        kb for pid in service.worker_pids()
                        if (kb := servers.status_kb(pid, "VmHWM")) is not None
                    ]  # fmt: skip
                    o, n = row.ours[-1], row.nginx[-1]
                    print(
                        f"   round {rnd + 1} {endpoint.name:<48} {describe(o)} "
                        f"| nginx {n.rps:>9,.0f} "
                        f"| ratio {o.rps / n.rps:.3f}"
                        + (f" | {o.non_3xx} non-2xx/3xx" if o.non_3xx else ""),
                        flush=True,
                    )
                if role == "exchange" and store == self.args.stores[0]:
                    for other in self.args.nginx_workers[1:]:
                        result = self.wrk(nginx_ports[other], ONE_COOKIE, directory)
                        self.nginx_extra.append({"nginx_workers": other, **asdict(result)})
                    self.measure_ceiling(workers, nginx_ports[ref], directory)
            acked = self.args.durability == "ack"
            if acked:  # every answered write is stored: counted before the edge's runs,
                report_counts(endpoints, rows, url)  # which write to the same store
            if role == "exchange" and store == self.args.stores[0]:
                self.measure_edge(workers, service, nginx_ports[ref], directory)
        if not acked:  # queued writes are stored once the server has stopped
            report_counts(endpoints, rows, url)
        self.rows += rows

    def warm(self, port: int, endpoint: Endpoint, directory: Path) -> WrkResult | None:
        """One run of ``--warmup`` seconds against a server just started, not measured (None
        when there is no warm-up)."""
        if self.args.warmup <= 0:
            return None
        return self.wrk(port, endpoint, directory, duration=self.args.warmup)

    def wrk_counted(self, port: int, endpoint: Endpoint, directory: Path, row: Row) -> WrkResult:
        """Our wrk run; for a cookie match, the redirects to its buyer during it are added to
        ``row.redirects``."""
        if endpoint.redirects_nid is None:
            return self.wrk(port, endpoint, directory)
        before = pixel_redirects(port, endpoint.redirects_nid)
        result = self.wrk(port, endpoint, directory)
        time.sleep(FOLD_WAIT)  # every worker's tally folded into its counters
        after = pixel_redirects(port, endpoint.redirects_nid)
        row.redirects = (row.redirects or 0) + after - before
        return result

    def measure_ceiling(self, workers: int, nginx_port: int, directory: Path) -> None:
        """granian answering the static 302 with no application code, next to nginx."""
        if not self.args.ceiling:
            return
        with servers.granian_bare(self.work, workers) as (port, _):
            warmed = self.warm(port, ONE_COOKIE, directory)
            bare = self.wrk(port, ONE_COOKIE, directory)
            ref = self.wrk(nginx_port, ONE_COOKIE, directory)
        ratio = bare.rps / ref.rps
        print(
            f"   ceiling: bare granian RSGI 302, {workers} worker(s) {bare.rps:>9,.0f} req/s "
            f"p99 {bare.p99_ms:6.2f} max {bare.max_ms:6.1f} ms | nginx {ref.rps:>9,.0f} "
            f"| ratio {ratio:.3f}",
            flush=True,
        )
        self.ceiling.append(
            {"workers": workers, "rps": bare.rps, "p50_ms": bare.p50_ms, "p99_ms": bare.p99_ms,
             "max_ms": bare.max_ms, "nginx_rps": ref.rps, "ratio": round(ratio, 3),
             "warmup": asdict(warmed) if warmed else None}
        )  # fmt: skip

    def measure_edge(
        self, workers: int, service: Service, nginx_port: int, directory: Path
    ) -> None:
        """The cookie match through the edge (nginx + Lua in front of this server, as many
        nginx workers as the reference) beside nginx's static 302, bare granian and the
        Python path, alternating in each round; google_hm (proxied) through the edge beside
        the same request sent to the server."""
        if not self.args.edge:
            return
        runs: dict[str, list[WrkResult]] = {key: [] for key, _ in EDGE_RUNS}
        cpu: dict[str, list[float]] = {key: [] for key, _ in EDGE_RUNS}
        edge_nginx_cpu: dict[str, list[float]] = {key: [] for key, _ in EDGE_RUNS}
        with (
            servers.edge(directory, service.config, self.args.nginx_workers[0]) as edge_port,
            servers.granian_bare(directory, workers) as (bare_port, _),
        ):
            static = servers.nginx_workers(self.work / f"nginx-{self.args.nginx_workers[0]}"
                                           / "nginx.pid")  # fmt: skip
            edge = servers.nginx_workers(directory / f"edge-{self.args.nginx_workers[0]}"
                                         / "logs" / "nginx.pid")  # fmt: skip
            ports = {"nginx": nginx_port, "nginx_distinct": nginx_port, "granian": bare_port}
            for port in (edge_port, bare_port):  # started for these runs: warmed first
                self.warm(port, ONE_COOKIE, directory)
            for rnd in range(self.args.rounds):
                for key, label in EDGE_RUNS:
                    port = ports.get(key, edge_port if key.startswith("edge") else service.port)
                    endpoint = (
                        HOSTED_MATCH if key.endswith("_hm")
                        else DISTINCT_BROWSERS if key.endswith("_distinct") else ONE_COOKIE
                    )  # fmt: skip
                    # whose CPU the requests use (bare granian's is not followed)
                    pids = (
                        static if key.startswith("nginx")
                        else edge + service.worker_pids() if key.startswith("edge")
                        else service.worker_pids() if key.startswith("python") else []
                    )  # fmt: skip
                    before = servers.cpu_seconds(pids)
                    nginx_before = servers.cpu_seconds(edge)
                    result = self.wrk(port, endpoint, directory)
                    used = servers.cpu_seconds(pids) - before
                    runs[key].append(result)
                    if key.startswith("edge") and result.requests:  # nginx's share of it
                        nginx_used = servers.cpu_seconds(edge) - nginx_before
                        edge_nginx_cpu[key].append(round(nginx_used / result.requests * 1e6, 1))
                    per_request = used / result.requests * 1e6 if result.requests and pids else 0
                    if pids:
                        cpu[key].append(round(per_request, 1))
                    print(
                        f"   edge round {rnd + 1} {label:<40} {result.rps:>9,.0f} req/s "
                        f"p50 {result.p50_ms:6.2f} p99 {result.p99_ms:6.2f} ms "
                        f"cpu {per_request:6.1f} µs/req"
                        + (f" | {result.non_3xx} non-2xx/3xx" if result.non_3xx else ""),
                        flush=True,
                    )
        summary = edge_summary(workers, runs, cpu)
        for key, used in edge_nginx_cpu.items():
            if used:
                summary[key]["nginx_cpu_us_per_request"] = statistics.median(used)
        self.edge.append(summary)

    def run(self) -> None:
        args = self.args
        self.redis_port: int | None = None
        with contextlib.ExitStack() as stack:
            if "redis" in args.stores:
                self.redis_port = stack.enter_context(
                    servers.redis_server(self.work, appendfsync=args.redis_aof)
                )
            nginx_ports = {
                w: stack.enter_context(servers.nginx(self.work, w)) for w in args.nginx_workers
            }
            for store in args.stores:
                for workers in args.workers:
                    for role in args.roles:
                        if not self.role_available(role):
                            continue
                        self.block(store, workers, role, nginx_ports)
            if args.soak:
                self.soak = soak(args, self.work)

    @staticmethod
    def role_available(role: str) -> bool:
        from cookiematch.roots import ROLE_FACTORIES

        if role not in ROLE_FACTORIES:
            print(f"\n== {role}: not served by this tree yet (TODO: no factory); skipped")
            return False
        return True


# --- soak ----------------------------------------------------------------------------------------


def soak(args: argparse.Namespace, work: Path) -> dict[str, object]:
    """The cookie match for ``args.soak`` seconds on 1 worker; VmRSS sampled every few s."""
    directory = work / "soak"
    directory.mkdir()
    store = args.stores[0]
    url = store_url_for(store, directory, None, 0) if store == "sqlite" else None
    if url is None:
        url = f"sqlite:///{directory}/store.db"
    print(f"\n== soak: exchange cookie match, 1 worker, {args.soak:g} s, {url}", flush=True)
    samples: list[tuple[float, int]] = []
    with servers.cookiematch(directory, url, role="exchange", workers=1) as service:
        pid = service.worker_pids()[0]
        stop = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not stop.wait(args.soak_interval if samples else 0):
                kb = servers.status_kb(pid, "VmRSS")
                if kb is not None:
                    samples.append((round(time.monotonic() - t0, 1), kb))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = servers.wrk(
            service.port,
            LUA / "cookie_match.lua",
            duration=args.soak,
            connections=args.connections,
            threads=args.threads,
        )
        stop.set()
        sampler.join()
        hwm = servers.status_kb(pid, "VmHWM")
    values = [kb for _, kb in samples]
    third = max(1, len(values) // 3)
    early, late = statistics.median(values[:third]), statistics.median(values[-third:])
    summary = {
        "seconds": args.soak,
        "rps": round(result.rps),
        "p99_ms": result.p99_ms,
        "samples": len(values),
        "rss_first_mb": round(values[0] / 1024, 1),
        "rss_min_mb": round(min(values) / 1024, 1),
        "rss_max_mb": round(max(values) / 1024, 1),
        "rss_last_mb": round(values[-1] / 1024, 1),
        "rss_first_third_median_mb": round(early / 1024, 1),
        "rss_last_third_median_mb": round(late / 1024, 1),
        "growth_last_vs_first_third_pct": round(100 * (late - early) / early, 2),
        "vmhwm_mb": round(hwm / 1024, 1) if hwm else None,
        "series": samples,
    }
    print(
        "   {rps:,} req/s; VmRSS first {rss_first_mb} MB, min {rss_min_mb}, max {rss_max_mb}, "
        "last {rss_last_mb}; median of first third {rss_first_third_median_mb} MB -> last third "
        "{rss_last_third_median_mb} MB ({growth_last_vs_first_third_pct:+}%); "
        "{samples} samples".format(**summary),
        flush=True,
    )
    return summary


# --- output --------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    conf = result["config"]
    lines = [
        f"wrk -t{conf['threads']} -c{conf['connections']} -d{conf['duration']}s, "
        f"{conf['rounds']} alternating rounds per endpoint; reference: nginx "
        f"worker_processes {conf['nginx_workers'][0]}, same Lua script; medians over rounds "
        "(max: the worst round). Ratio to the ceiling: the ratio to nginx over the bare-granian "
        "ceiling's ratio to nginx with the same workers (below). Targets:",
        "",
        *(f"- {kind}: {target.describe()}" for kind, target in TARGETS.items()),
        "",
        "| endpoint | store | workers | req/s | p50 ms | p99 ms | max ms | nginx req/s "
        "| ratio to nginx (min-max) | ratio to ceiling | verdict | checked / answered "
        "| peak RSS MB |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---|---|---:|",
    ]
    for row in result["rows"]:
        ceiling = "-" if row["ratio_to_ceiling"] is None else f"{row['ratio_to_ceiling']:.3f}"
        verdict = "pass" if row["verdict"] == "pass" else "**fail**: " + ", ".join(row["missed"])
        if row["unchecked"]:
            verdict += " (unchecked: " + ", ".join(row["unchecked"]) + ")"
        checked = row["keys_written"] if row["keys_written"] is not None else row["redirects"]
        answered = row.get("answered", row["requests"])  # (results of an earlier version)
        answers = "-" if checked is None else f"{checked:,} / {answered:,}"
        lines.append(
            f"| {row['endpoint']} | {row['store']} | {row['workers']} | {row['rps']:,} "
            f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['max_ms']:.1f} "
            f"| {row['nginx_rps']:,} "
            f"| {row['ratio']:.3f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) "
            f"| {ceiling} | {verdict} | {answers} | {row['rss_peak_mb']} |"
        )
    lines += [
        "",
        "Checked / answered: for a durable write, the keys found in the store after the block's "
        "rounds (before the edge's runs, which write to the same store; with `async` "
        "durability, once the server has stopped); "
        "for a cookie match, the redirects to the buyer the server counted "
        "(`cookiematch_pixel_outcomes`); against the requests wrk saw answered (for a "
        "durable write, the warm-up's included: its writes are in the store too).",
    ]
    warmed = [row for row in result["rows"] if row.get("warmup")]
    if warmed:
        lines += [
            "",
            f"Warm-up: each server, once started, ran each endpoint for {conf['warmup']:g} s "
            "before its rounds; not in the figures above (a start's first second: "
            "`bench/first_seconds.py`). Its p99 / max in ms:",
            "",
            *(
                f"- {row['endpoint']}, {row['store']}, {row['workers']} worker(s): "
                f"{row['warmup']['p99_ms']:.1f} / {row['warmup']['max_ms']:.1f}"
                for row in warmed
            ),
        ]
    summary = result.get("ceiling_summary") or []
    if summary:
        lines += [
            "",
            "Ceiling: granian (RSGI, same workers) answering the same static 302 with no "
            "application code, measured after each exchange round next to nginx (medians over "
            "the rounds; max: the worst):",
            "",
        ]
        for c in summary:
            lines.append(
                f"- {c['workers']} worker(s): {c['rps']:,} req/s, p99 {c['p99_ms']:.2f} ms, "
                f"max {c['max_ms']:.1f} ms; nginx {c['nginx_rps']:,}: ratio {c['ratio']:.3f} "
                f"({c['rounds']} round{'s' if c['rounds'] > 1 else ''}: "
                + ", ".join(
                    f"{run['ratio']:.3f}"
                    for run in result["ceiling"]
                    if run["workers"] == c["workers"]
                )
                + ")"
            )
    extra = result.get("nginx_extra") or []
    if extra:
        lines += ["", "nginx with other worker_processes (one-cookie cookie-match script):", ""]
        for e in extra:
            lines.append(
                f"- worker_processes {e['nginx_workers']}: {e['rps']:,.0f} req/s, "
                f"p50 {e['p50_ms']:.2f} ms, p99 {e['p99_ms']:.2f} ms"
            )
    for edge in result.get("edge") or []:
        lines += [
            "",
            f"Edge (docs/edge.md), {edge['workers']} server worker(s), nginx workers as the "
            "reference; ratios per round, side by side (with distinct browsers, to nginx's "
            "static 302 under the same wrk script). Target: the edge's cookie match "
            f"≥ {EDGE_TARGET['nginx']:.2f} of nginx with p99 ≤ {EDGE_TARGET['p99_ms']:g} ms, "
            f"a proxied google_hm ≤ {EDGE_TARGET['proxied_cost']:.2f}x the direct cost: "
            f"**{edge['verdict']}**.",
            "",
            "| measured | req/s | p50 ms | p99 ms | CPU µs/request | ratio to nginx static "
            "(per round) |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for key, _ in EDGE_RUNS:
            row = edge[key]
            ratios = ", ".join(f"{r:.2f}" for r in row["ratio_to_nginx"]) or "-"
            used = row.get("cpu_us_per_request")
            nginx_share = row.get("nginx_cpu_us_per_request")
            shown = f"{used} (nginx {nginx_share})" if used and nginx_share else used or "-"
            lines.append(
                f"| {row['label']} | {row['rps']:,} | {row['p50_ms']} | {row['p99_ms']} "
                f"| {shown} | {ratios} |"
            )
        cost = ", ".join(f"{c:.2f}" for c in edge["proxied_cost"])
        cpu_cost = ", ".join(f"{c:.2f}" for c in edge.get("proxied_cpu_cost", []))
        lines.append(
            f"\nProxied google_hm cost, per round: req/s direct / through the edge {cost}; "
            f"CPU per request through the edge (nginx + server) / direct (server) {cpu_cost}."
        )
    soak_result = result.get("soak")
    if soak_result:
        lines += [
            "",
            "Soak (exchange cookie match, 1 worker, {seconds:g} s): {rps:,} req/s; VmRSS first "
            "{rss_first_mb} MB, min {rss_min_mb}, max {rss_max_mb}, last {rss_last_mb}; median "
            "first third {rss_first_third_median_mb} MB -> last third "
            "{rss_last_third_median_mb} MB ({growth_last_vs_first_third_pct:+}%), "
            "{samples} samples.".format(**soak_result),
        ]
    return "\n".join(lines) + "\n"


def csv_list(cast: Callable[[str], object]) -> Callable[[str], list[object]]:
    return lambda text: [cast(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--stores", type=csv_list(str), default=["sqlite", "redis"])
    parser.add_argument("--workers", type=csv_list(int), default=[1, 2])
    parser.add_argument("--roles", type=csv_list(str), default=["exchange", "buyer", "dmp"])
    parser.add_argument("--nginx-workers", type=csv_list(str), default=["auto", "1"])
    parser.add_argument("--durability", default="ack", choices=("ack", "async"))
    parser.add_argument("--redis-aof", default=None, choices=("everysec", "always"))
    parser.add_argument("--loop", default=None, help="granian --loop (asyncio, uvloop, rloop)")
    parser.add_argument("--extra-path", type=csv_list(str), default=[], help="PYTHONPATH add")
    parser.add_argument(
        "--no-ceiling", dest="ceiling", action="store_false",
        help="skip the bare-granian 302 measured after each exchange round",
    )  # fmt: skip
    parser.add_argument(
        "--no-edge", dest="edge", action="store_false",
        help="skip the edge (nginx + Lua in front of the server) measured per worker count",
    )  # fmt: skip
    parser.add_argument(
        "--only", type=csv_list(str), default=[],
        help="endpoints whose name contains one of these (default: all of each role)",
    )  # fmt: skip
    parser.add_argument(
        "--warmup", type=float, default=1.0,
        help="seconds of one unmeasured run per endpoint after each server's start; 0: none",
    )  # fmt: skip
    parser.add_argument("--soak", type=float, default=30.0, help="seconds; 0: no soak")
    parser.add_argument("--soak-interval", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()
    if args.extra_path:
        args.extra_path = [str(Path(p).resolve()) for p in args.extra_path]

    started = datetime.datetime.now().astimezone()
    result: dict[str, object] = {"started": started.isoformat(), "machine": machine()}
    print(json.dumps(result["machine"]), flush=True)
    with tempfile.TemporaryDirectory(prefix="cookiematch-bench-") as tmp:
        work = Path(tmp)
        bid_request_body(work)
        bench = Bench(args, work)
        bench.run()
    result["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    ceilings = ceiling_summary(bench.ceiling)
    result["targets"] = {kind: asdict(target) for kind, target in TARGETS.items()}
    result["rows"] = [
        row.summary(ceilings[row.workers]["ratio"] if row.workers in ceilings else None)
        for row in bench.rows
    ]
    result["nginx_extra"] = bench.nginx_extra
    result["ceiling"] = bench.ceiling
    result["ceiling_summary"] = list(ceilings.values())
    result["edge"] = bench.edge
    result["soak"] = getattr(bench, "soak", None)
    result["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    result["elapsed_s"] = round((datetime.datetime.now().astimezone() - started).total_seconds(), 1)
    out = args.out / started.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    table = markdown(result)
    (out / "result.md").write_text(table)
    shutil.copy(out / "result.json", args.out / "latest.json")
    shutil.copy(out / "result.md", args.out / "latest.md")
    print("\n" + table)
    print(f"results: {out}/result.json, result.md ({result['elapsed_s']} s)")


if __name__ == "__main__":
    main()
