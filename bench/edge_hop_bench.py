"""The edge's hop to the server, variant beside variant (docs/performance.md, "The edge").

    python bench/edge_hop_bench.py [--rounds 5] [--duration 3] [--nginx-workers 1]
        [--variants buffered,unbuffered,nobuffering,nolog,base] [--base /work/main/src]
        [--proxied-only]

One exchange server (redis store, one worker). Each variant is an edge in front of it,
rendered by ``cookiematch edge render`` and possibly with its ``nginx.conf`` edited
(``VARIANTS``); ``base`` is the edge rendered by the tree ``--base`` (its Lua and its
``nginx.conf``), to compare a change with what it changes in the same run. In each round,
per variant: nginx's static 302 then the variant's cookie match
(ratio to nginx), then ``google_hm`` sent to the server directly then through the variant
(cost: req/s direct / req/s through the variant); CPU per request of the processes answering
(nginx's workers, the server's) beside req/s, which the other load on the machine moves much
less, split into nginx's share and the server's (beside the server's own direct).
``--proxied-only`` measures only ``google_hm``. Medians and per-round ratios are printed;
only ratios measured side by side mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers
from http_bench import HOSTED_MATCH, LUA, ONE_COOKIE, Endpoint, csv_list

MATCHES_BUFFER = " buffer=64k flush=1s if=$cm_match;"


@dataclass(frozen=True)
class Variant:
    """An edge with these (old, new) edits of its rendered nginx.conf."""

    edits: tuple[tuple[str, str], ...] = ()
    base: bool = False  # rendered by the --base tree


VARIANTS = {
    "buffered": Variant(),  # as rendered
    # the matches log written at once, as before it was buffered
    "unbuffered": Variant(edits=((MATCHES_BUFFER, " if=$cm_match;"),)),
    # nginx's answer buffering off for proxied requests
    "nobuffering": Variant(
        edits=(("proxy_redirect off;", "proxy_redirect off;\n        proxy_buffering off;"),),
    ),
    # no access log line for any request
    "nolog": Variant(
        edits=(("    access_log @OUT@/logs/access.log edge", "    access_log off; #"),),
    ),
    "base": Variant(base=True),
    # accept settings: a listening socket per worker; each wakeup accepts all it can
    "reuseport": Variant(
        edits=(
            (
                ";\n\n        proxy_http_version 1.1;",
                " reuseport;\n\n        proxy_http_version 1.1;",
            ),
        ),
    ),
    "multiaccept": Variant(
        edits=(("worker_connections 4096;", "worker_connections 4096;\n    multi_accept on;"),),
    ),
    # upstream keep-alive: fewer or more idle connections cached than wrk's 64
    "keepalive16": Variant(edits=(("keepalive 64;", "keepalive 16;"),)),
    "keepalive256": Variant(edits=(("keepalive 64;", "keepalive 256;"),)),
    # only the headers nginx must set (Connection, Host): the cost of X-Forwarded-*
    "fewheaders": Variant(
        edits=(
            ("        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n", ""),
            ("        proxy_set_header X-Forwarded-Proto $scheme;\n", ""),
        ),
    ),
    # X-Forwarded-For without reading the browser's own (a cheaper variable)
    "xffaddr": Variant(
        edits=(("X-Forwarded-For $proxy_add_x_forwarded_for;", "X-Forwarded-For $remote_addr;"),),
    ),
    # the worker pinned to a core
    "affinity": Variant(edits=(("events {", "worker_cpu_affinity auto;\n\nevents {"),)),
    # one nginx worker per core, whatever --nginx-workers says (with the server on the same cores)
    "workersauto": Variant(edits=(("\nworker_processes ", "\nworker_processes auto; #"),)),
    # small writes to the browser not postponed (nginx's default waits for 1460 bytes)
    "nopostpone": Variant(
        edits=(("proxy_redirect off;", "proxy_redirect off;\n        postpone_output 0;"),),
    ),
}


@contextlib.contextmanager
def edge(
    work: Path, name: str, variant: Variant, config: Path, workers: str, base: str
) -> Iterator[int]:
    """The edge ``variant`` (rendered, edited, started); yields its port."""
    out, port = work / f"edge-{name}", servers.free_port()
    args = [sys.executable, "-m", "cookiematch", "edge", "render", "--config", str(config)]
    args += ["--out", str(out), "--listen", f"127.0.0.1:{port}", "--workers", workers]
    env = {**os.environ, "PYTHONPATH": base} if variant.base else None
    subprocess.run(args, check=True, capture_output=True, env=env)
    conf = out / "nginx.conf"
    text = conf.read_text()
    for old, new in variant.edits:
        old = old.replace("@OUT@", str(out))
        assert old in text, (name, old)
        text = text.replace(old, new)
    conf.write_text(text)
    nginx = [servers.NGINX, "-p", str(out), "-c", str(conf), "-e", str(out / "logs" / "error.log")]
    with servers._serving([*nginx, "-g", "daemon off;"], out, port):
        yield port


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nginx-workers", default="1")
    parser.add_argument("--variants", type=csv_list(str), default=["buffered", "unbuffered"])
    parser.add_argument("--base", default="/work/main/src", help="the tree the base variant is")
    parser.add_argument(
        "--proxied-only", action="store_true", help="only google_hm, direct and through each"
    )
    args = parser.parse_args()
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {sorted(VARIANTS)}")
    run_number = 0
    last_p99 = 0.0

    def wrk(port: int, endpoint: Endpoint, work: Path, pids: list[int]) -> tuple[float, float]:
        """req/s, and CPU µs per request of ``pids``."""
        nonlocal run_number
        run_number += 1
        before = servers.cpu_seconds(pids)
        result = servers.wrk(
            port, LUA / endpoint.script, duration=args.duration, connections=args.connections,
            threads=args.threads, args=endpoint.args(run_number, work),
        )  # fmt: skip
        assert result.non_3xx == 0 and result.requests, (port, endpoint.name, result)
        nonlocal last_p99
        last_p99 = result.p99_ms
        return result.rps, (servers.cpu_seconds(pids) - before) / result.requests * 1e6

    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edge-hop-")))
        redis_port = stack.enter_context(servers.redis_server(work))
        service = stack.enter_context(
            servers.cookiematch(work / "server", f"redis://127.0.0.1:{redis_port}/0")
        )
        static = stack.enter_context(servers.nginx(work, args.nginx_workers))
        static_pids = servers.nginx_workers(work / f"nginx-{args.nginx_workers}" / "nginx.pid")
        ports = {
            name: stack.enter_context(
                edge(work, name, VARIANTS[name], service.config, args.nginx_workers, args.base)
            )
            for name in args.variants
        }
        nginx_pids = {
            name: servers.nginx_workers(work / f"edge-{name}" / "logs" / "nginx.pid")
            for name in ports
        }
        server_pids = direct_pids = service.worker_pids()
        match_ratio: dict[str, list[float]] = {name: [] for name in ports}
        match_cpu: dict[str, list[float]] = {name: [] for name in ports}
        match_us: dict[str, list[float]] = {name: [] for name in ports}
        match_p99: dict[str, list[float]] = {name: [] for name in ports}
        hm_cost: dict[str, list[float]] = {name: [] for name in ports}
        hm_cpu: dict[str, list[float]] = {name: [] for name in ports}
        hm_nginx: dict[str, list[float]] = {name: [] for name in ports}
        hm_server: dict[str, list[float]] = {name: [] for name in ports}
        hm_direct: dict[str, list[float]] = {name: [] for name in ports}

        def measure_match(name: str, port: int) -> None:
            """The variant's cookie match just after nginx's static 302."""
            ref, ref_cpu = wrk(static, ONE_COOKIE, work, static_pids)
            rps, cpu = wrk(port, ONE_COOKIE, work, nginx_pids[name])
            match_ratio[name].append(round(rps / ref, 3))
            match_cpu[name].append(round(cpu / ref_cpu, 3))
            match_us[name].append(round(cpu, 1))
            match_p99[name].append(last_p99)

        for rnd in range(args.rounds):
            for name, port in ports.items():  # each beside its own reference, just before
                if not args.proxied_only:
                    measure_match(name, port)
                direct, direct_cpu = wrk(service.port, HOSTED_MATCH, work, direct_pids)
                nginx_before = servers.cpu_seconds(nginx_pids[name])
                rps, cpu = wrk(port, HOSTED_MATCH, work, nginx_pids[name] + server_pids)
                nginx_cpu = servers.cpu_seconds(nginx_pids[name]) - nginx_before
                nginx_us = nginx_cpu / (rps * args.duration) * 1e6
                hm_cost[name].append(round(direct / rps, 3))
                hm_cpu[name].append(round(cpu / direct_cpu, 3))
                hm_nginx[name].append(round(nginx_us, 1))
                hm_server[name].append(round(cpu - nginx_us, 1))
                hm_direct[name].append(round(direct_cpu, 1))
            print(f"round {rnd + 1} done", flush=True)
        print(
            "\nper variant, medians [per round]: cookie match req/s / nginx static 302 req/s;"
            " its nginx CPU per request / static 302's, in µs, and its p99 in ms; google_hm req/s"
            " direct / through the edge; its CPU per request (nginx + server) / direct (server);"
            " nginx's µs per proxied google_hm; the server's µs per google_hm through the edge"
            " and direct"
        )
        for name in ports:
            if not args.proxied_only:
                print(
                    f"{name:<16} match {median(match_ratio[name])} {match_ratio[name]}"
                    f" cpu {median(match_cpu[name])} {match_cpu[name]}"
                    f" µs {median(match_us[name])} {match_us[name]}"
                    f" p99 {median(match_p99[name])} {match_p99[name]}"
                )
            print(
                f"{name:<16} google_hm {median(hm_cost[name])} {hm_cost[name]}"
                f" cpu {median(hm_cpu[name])} {hm_cpu[name]}"
                f" nginx µs {median(hm_nginx[name])} {hm_nginx[name]}"
                f"\n{'':<16} server µs {median(hm_server[name])} {hm_server[name]}"
                f" direct {median(hm_direct[name])} {hm_direct[name]}"
            )


if __name__ == "__main__":
    main()
