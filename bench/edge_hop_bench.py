"""The edge's hop to the server, variant beside variant (docs/performance.md, "The edge").

    python bench/edge_hop_bench.py [--rounds 5] [--duration 3] [--nginx-workers 1]
        [--variants buffered,unbuffered,nobuffering,nolog,base,plain,uds,haproxy]
        [--base /work/main/src] [--proxied-only]

One exchange server (redis store, one worker). Each variant is an edge in front of it,
rendered by ``cookiematch edge render`` and possibly with its ``nginx.conf`` edited
(``VARIANTS``); ``base`` is the edge rendered by the tree ``--base`` (its Lua and its
``nginx.conf``), to compare a change with what it changes in the same run. Three variants
are not the rendered edge: ``plain`` is nginx with no Lua at all (the rendered configuration
without the Lua module, its map and its matches log: every request proxied by a plain
``proxy_pass`` to the same upstream block); ``uds`` is the rendered edge with its upstream a
Unix socket, where a second server (same configuration, same store, started like ``cookiematch
serve``) listens; ``haproxy`` is HAProxy (http mode, one thread, no logs, kept-alive
connections on both sides, ``http-reuse always``) proxying every request to the server.
In each round, per variant: nginx's static 302 then the variant's cookie match
(ratio to nginx; not for ``plain`` and ``haproxy``, which answer none), then ``google_hm``
sent to the server directly then through the variant (cost: req/s direct / req/s through the
variant); CPU per request of the processes answering (the proxy's: nginx's workers or
HAProxy's process; the server's) beside req/s, which the other load on the machine moves much
less, split into the proxy's share and the server's (beside the server's own direct).
``--proxied-only`` measures only ``google_hm``. Medians and per-round ratios are printed;
only ratios measured side by side mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
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
    proxy: str = "edge"  # "edge" (rendered, edited), "plain" (nginx, no Lua) or "haproxy"
    uds: bool = False  # the upstream is the server on a Unix socket

    @property
    def answers_match(self) -> bool:
        """Whether the variant answers the cookie match itself (only the edge's Lua does)."""
        return self.proxy == "edge"


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
    # nginx with no Lua: the rendered configuration less the module, its map and its log
    "plain": Variant(proxy="plain"),
    # the rendered edge, its upstream the server on a Unix socket
    "uds": Variant(uds=True),
    # HAProxy in front of the same server
    "haproxy": Variant(proxy="haproxy"),
}

# What ``plain`` removes from the rendered nginx.conf (regexes, and what replaces them): the
# Lua module and what uses it, the map that chooses the Lua (and the log field showing it),
# the matches log.
PLAIN_EDITS = (
    (r"load_module [^;]*;\n", ""),
    (r"    lua_package_path [^\n]*\n", ""),
    (r"    init_by_lua_block \{.*?\n    \}\n", ""),
    (r"    map .*?\n    \}\n", ""),
    (r" \$cm_maybe_match';", "';"),
    (r"    log_format cm_match [^\n]*\n", ""),
    (r"            set \$cm_match \"\";\n", ""),
    (r"            access_log [^\n]* cm_match [^\n]*\n", ""),
    (r"            if \(\$cm_maybe_match\) \{.*?\n            \}\n", ""),
)

HAPROXY = os.environ.get("HAPROXY", "/usr/sbin/haproxy")
HAPROXY_CONF = """\
global
    nbthread 1
    maxconn 4096
    pidfile {out}/haproxy.pid

defaults
    mode http
    option http-keep-alive
    http-reuse always
    option forwardfor
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    timeout http-keep-alive 75s

frontend edge
    bind 127.0.0.1:{port}
    http-request set-header X-Forwarded-Proto http
    default_backend cookiematch

backend cookiematch
    server cookiematch {upstream}
"""

# ``cookiematch serve``'s server (``web/server.py`` ``serve``: the same granian settings)
# bound to a Unix socket instead of the configuration's address: granian's ``uds``.
SERVE_ON_SOCKET = """\
import sys
from pathlib import Path

import granian.server

from cookiematch.roots import ROLE_FACTORIES
from cookiematch.web.server import serve

Server = granian.server.Server


def on_socket(*args, **kwargs):
    return Server(*args, uds=Path(sys.argv[2]), **kwargs)


granian.server.Server = on_socket
serve(ROLE_FACTORIES["exchange"], "127.0.0.1", int(sys.argv[3]), config=sys.argv[1])
"""


@contextlib.contextmanager
def server_on_socket(work: Path, config: Path) -> Iterator[tuple[Path, list[int]]]:
    """The exchange server of ``config`` (one worker) listening on a Unix socket instead of
    its TCP address; yields the socket's path and the server's worker pids."""
    path = work / "exchange.sock"
    work.mkdir(parents=True, exist_ok=True)
    script = work / "serve_on_socket.py"
    script.write_text(SERVE_ON_SOCKET)
    args = [sys.executable, str(script), str(config), str(path), str(servers.free_port())]
    with (work / "uds-server.log").open("ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                with socket.socket(socket.AF_UNIX) as probe:
                    try:
                        probe.connect(str(path))
                        probe.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
                        if probe.recv(16).startswith(b"HTTP/1.1 200"):
                            break
                    except OSError:
                        pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server on {path} did not start: {log.name}")
                time.sleep(0.1)
            tree = servers.descendants(proc.pid)
            yield path, [pid for pid in tree if not servers.children(pid)] or [proc.pid]
        finally:
            servers.stop(proc, timeout=40)


@contextlib.contextmanager
def haproxy(work: Path, upstream: str) -> Iterator[tuple[int, list[int]]]:
    """HAProxy in front of ``upstream`` (``host:port``); yields its port and its pid."""
    out, port = work / "haproxy", servers.free_port()
    out.mkdir()
    conf = out / "haproxy.cfg"
    conf.write_text(HAPROXY_CONF.format(out=out, port=port, upstream=upstream))
    with servers._serving([HAPROXY, "-db", "-f", str(conf)], out, port) as proc:
        yield port, [proc.pid]


def without_lua(text: str) -> str:
    """The rendered ``nginx.conf`` ``text`` with ``PLAIN_EDITS`` made."""
    for pattern, replacement in PLAIN_EDITS:
        text, count = re.subn(pattern, replacement, text, flags=re.S)
        assert count, pattern
    assert not re.search(r"^[^#]*(lua|cm_match)", text, re.M | re.I), text
    return text


@contextlib.contextmanager
def edge(
    work: Path,
    name: str,
    variant: Variant,
    config: Path,
    workers: str,
    base: str,
    socket_path: Path | None,
) -> Iterator[int]:
    """The edge ``variant`` (rendered, edited, started; its upstream ``socket_path`` if
    given); yields its port."""
    out, port = work / f"edge-{name}", servers.free_port()
    args = [sys.executable, "-m", "cookiematch", "edge", "render", "--config", str(config)]
    args += ["--out", str(out), "--listen", f"127.0.0.1:{port}", "--workers", workers]
    # workers as this user, every variant alike: they reach the socket in the private temp dir
    args += ["--user", pwd.getpwuid(os.geteuid()).pw_name]
    env = {**os.environ, "PYTHONPATH": base} if variant.base else None
    subprocess.run(args, check=True, capture_output=True, env=env)
    conf = out / "nginx.conf"
    text = conf.read_text()
    if variant.proxy == "plain":
        text = without_lua(text)
    if socket_path is not None:
        text, count = re.subn(
            r"(upstream cookiematch \{\n\s+server )[^;]+;", rf"\g<1>unix:{socket_path};", text
        )
        assert count == 1, name
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
        direct_pids = service.worker_pids()
        socket_path, socket_pids = None, []
        if any(VARIANTS[name].uds for name in args.variants):
            socket_path, socket_pids = stack.enter_context(
                server_on_socket(work / "uds", service.config)
            )
        ports: dict[str, int] = {}
        nginx_pids: dict[str, list[int]] = {}  # the proxy's processes (nginx's workers or not)
        server_pids: dict[str, list[int]] = {}
        for name in args.variants:
            variant = VARIANTS[name]
            server_pids[name] = socket_pids if variant.uds else direct_pids
            if variant.proxy == "haproxy":
                ports[name], nginx_pids[name] = stack.enter_context(
                    haproxy(work, f"127.0.0.1:{service.port}")
                )
                continue
            ports[name] = stack.enter_context(
                edge(
                    work, name, variant, service.config, args.nginx_workers, args.base,
                    socket_path if variant.uds else None,
                )
            )  # fmt: skip
            nginx_pids[name] = servers.nginx_workers(work / f"edge-{name}" / "logs" / "nginx.pid")
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
                if not args.proxied_only and VARIANTS[name].answers_match:
                    measure_match(name, port)
                direct, direct_cpu = wrk(service.port, HOSTED_MATCH, work, direct_pids)
                nginx_before = servers.cpu_seconds(nginx_pids[name])
                rps, cpu = wrk(port, HOSTED_MATCH, work, nginx_pids[name] + server_pids[name])
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
            " direct / through the edge; its CPU per request (proxy + server) / direct (server);"
            " the proxy's (nginx's or HAProxy's) µs per proxied google_hm; the server's µs per"
            " google_hm through the proxy and direct"
        )
        for name in ports:
            if not args.proxied_only and VARIANTS[name].answers_match:
                print(
                    f"{name:<16} match {median(match_ratio[name])} {match_ratio[name]}"
                    f" cpu {median(match_cpu[name])} {match_cpu[name]}"
                    f" µs {median(match_us[name])} {match_us[name]}"
                    f" p99 {median(match_p99[name])} {match_p99[name]}"
                )
            print(
                f"{name:<16} google_hm {median(hm_cost[name])} {hm_cost[name]}"
                f" cpu {median(hm_cpu[name])} {hm_cpu[name]}"
                f" proxy µs {median(hm_nginx[name])} {hm_nginx[name]}"
                f"\n{'':<16} server µs {median(hm_server[name])} {hm_server[name]}"
                f" direct {median(hm_direct[name])} {hm_direct[name]}"
            )


if __name__ == "__main__":
    main()
