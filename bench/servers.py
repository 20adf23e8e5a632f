"""The processes a benchmark drives: nginx (the reference), redis-server, cookiematch; wrk.

Each server gets its own temporary directory and a free loopback port, and is stopped (SIGTERM,
then SIGKILL) when its ``with`` block ends. Used by ``bench/http_bench.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
WRK = os.environ.get("WRK", "wrk")

# What nginx answers: a 302 shaped like a cookie-match redirect, with a Set-Cookie header.
NGINX_LOCATION = (
    "http://ad.network.com/pixel?id=&p1=v1&p2=v2"
    "&google_gid=CAESEJpPHn1dJmHCBbQZcIgIV4Y&google_cver=1"
)
NGINX_COOKIE = (
    "cm_id=AAECAwQFBgcICQoLDA0ODw; Max-Age=33696000; Path=/; Secure; HttpOnly; SameSite=None"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0) -> None:
    """Until ``url`` answers anything (a redirect is not followed)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    deadline = time.monotonic() + timeout
    while True:
        try:
            opener.open(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:g} s") from None
            time.sleep(0.1)


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- process tree and memory -----------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return sorted(found)


def descendants(pid: int) -> list[int]:
    out = []
    for child in children(pid):
        out.append(child)
        out.extend(descendants(child))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes ``pids`` have used (from /proc; gone ones: 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def nginx_master(workdir: Path, workers: str) -> int:
    """The pid of the master of ``nginx(workdir, workers)``."""
    return int((workdir / f"nginx-{workers}" / "nginx.pid").read_text().split()[0])


def nginx_workers(pid_file: Path) -> list[int]:
    """The worker processes of the nginx whose master wrote ``pid_file``."""
    return children(int(pid_file.read_text().split()[0]))


def status_kb(pid: int, name: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (``VmRSS``, ``VmHWM``), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{name}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# --- nginx -------------------------------------------------------------------------------------

NGINX_CONF = """\
worker_processes {workers};
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            add_header Set-Cookie "{cookie}" always;
            add_header Cache-Control "no-store" always;
            return 302 "{location}";
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(workdir: Path, workers: str) -> Iterator[int]:
    """nginx answering every request with a static 302; yields its port."""
    prefix = workdir / f"nginx-{workers}"
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            workers=workers, prefix=prefix, port=port, cookie=NGINX_COOKIE, location=NGINX_LOCATION
        )
    )
    args = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    with _serving(args, prefix, port):
        yield port


@contextlib.contextmanager
def _serving(
    args: list[str], directory: Path, port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in ``directory`` (output to its stderr.log; ``env`` added to the
    environment) until ``/pixel`` answers on ``port``; yield the process; stop it on exit."""
    log = (directory / "stderr.log").open("wb")
    proc = subprocess.Popen(
        args, cwd=directory, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/pixel")
        yield proc
    finally:
        stop(proc)
        log.close()


@contextlib.contextmanager
def edge(workdir: Path, config: Path, workers: str) -> Iterator[int]:
    """The edge (``cookiematch edge render``: nginx + Lua) in front of the server ``config``
    describes; yields its port."""
    out = workdir / f"edge-{workers}"
    port = free_port()
    subprocess.run(
        [sys.executable, "-m", "cookiematch", "edge", "render", "--config", str(config),
         "--out", str(out), "--listen", f"127.0.0.1:{port}", "--workers", workers],
        check=True, capture_output=True,
    )  # fmt: skip
    conf = out / "nginx.conf"
    args = [NGINX, "-p", str(out), "-c", str(conf), "-e", str(out / "logs" / "error.log")]
    with _serving([*args, "-g", "daemon off;"], out, port):
        yield port


BARE_RSGI_APP = """\
HEADERS = [("location", {location!r}), ("set-cookie", {cookie!r}), ("cache-control", "no-store")]


async def app(scope, proto):
    proto.response_empty(302, HEADERS)
"""


@contextlib.contextmanager
def granian_bare(workdir: Path, workers: int) -> Iterator[tuple[int, int]]:
    """granian serving a bare RSGI callable that answers nginx's static 302 (no cookiematch
    code): the ceiling of any Python handler on this server stack. Yields its port and pid."""
    directory = workdir / f"granian-bare-{workers}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bare_rsgi.py").write_text(
        BARE_RSGI_APP.format(location=NGINX_LOCATION, cookie=NGINX_COOKIE)
    )
    port = free_port()
    args = [str(VENV_BIN / "granian"), "--interface", "rsgi", "--no-ws", "--host", "127.0.0.1"]
    args += ["--port", str(port), "--workers", str(workers), "bare_rsgi:app"]
    with _serving(args, directory, port) as proc:
        yield port, proc.pid


@contextlib.contextmanager
def minimal_app(
    directory: Path, module: str, workers: int, env: dict[str, str]
) -> Iterator[tuple[int, int]]:
    """granian serving ``bench/<module>.py``'s ``app`` (a minimal reference app) on uvloop,
    with ``env`` (its settings); yields its port and pid."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [str(VENV_BIN / "granian"), "--interface", "rsgi", "--no-ws", "--host", "127.0.0.1"]
    args += ["--port", str(port), "--workers", str(workers), "--loop", "uvloop", f"{module}:app"]
    bench = str(ROOT / "bench")
    with _serving(args, directory, port, {**env, "PYTHONPATH": bench}) as proc:
        yield port, proc.pid


# --- redis-server ------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(workdir: Path, appendfsync: str | None = None) -> Iterator[int]:
    """A private redis-server on a free port: no RDB snapshots; AOF off unless ``appendfsync``
    (``everysec`` or ``always``) is given. Yields its port."""
    directory = workdir / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--dir", str(directory), "--protected-mode", "no", "--daemonize", "no"]
    if appendfsync:
        args += ["--appendonly", "yes", "--appendfsync", appendfsync]
    else:
        args += ["--appendonly", "no"]
    log = (directory / "redis.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        yield port
    finally:
        stop(proc)
        log.close()


def redis_pid(port: int) -> int:
    """The process ID of the redis-server listening on ``port`` (its ``INFO``)."""
    import redis

    client = redis.Redis(port=port)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


# --- cookiematch -------------------------------------------------------------------------------

STORE_CONFIG = """\
[store]
url = "{store_url}"
durability = "{durability}"
"""

ROLE_CONFIG = {
    "exchange": """\
[exchange]
listen = "127.0.0.1:{port}"
cookie_name = "cm_id"

[[exchange.keys]]
version = 1
secret = "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE="

[[exchange.buyers]]
nid = "ad_network_xyz"
redirect_url = "http://ad.network.com/pixel?id="
gvl_vendor_id = 32

[[exchange.buyers]]
nid = "cookie-monster"
redirect_url = "http://cookie-monster.com/pixel?id="
hosted_match = true

[[exchange.user_lists]]
id = 12345
owner = "ad_network_xyz"
""",
    "buyer": """\
[buyer]
listen = "127.0.0.1:{port}"
nid = "finest-dsp"
exchange_url = "http://exchange.localhost:8700/pixel"
public_url = "http://buyer.localhost:8800"
win_notice_key = "bench-win-notice-key-0123456789"
response = "gif"

[[buyer.campaigns]]
id = "retarget-shoes"
audience = "matched"
matched_bid_price = 4.0
adomain = ["finest-shoes.example"]
adm = "<div>Welcome back! The shoes you looked at are 20% off.${{MATCH_TAG}}</div>"

[[buyer.campaigns]]
id = "prospect-brand"
audience = "any"
bid_price = 0.5
adomain = ["finest-dsp.example"]
adm = "<div>FinestDSP brand campaign.${{MATCH_TAG}}</div>"
""",
    "dmp": """\
[dmp]
listen = "127.0.0.1:{port}"
public_url = "http://dmp.localhost:8720"
cookie_name = "dmp_id"

[[dmp.clients]]
id = "shop"
allowed_origins = ["https://shop.example"]

[[dmp.partners]]
id = "analytics"
sync_url = "https://analytics.example/sync?redir=${{CALLBACK_URL}}"
uid_macro = "$UID"
ttl_days = 7
""",
}


@dataclass
class Service:
    """A running ``cookiematch serve``: its port, main process and config."""

    role: str
    port: int
    proc: subprocess.Popen[bytes]
    config: Path
    store_url: str
    workers: int
    log: Path
    extra: dict[str, object] = field(default_factory=dict)

    def worker_pids(self) -> list[int]:
        """The granian worker processes (the leaves of the process tree)."""
        tree = descendants(self.proc.pid)
        return [pid for pid in tree if not children(pid)] or [self.proc.pid]


def write_config(
    directory: Path, role: str, port: int, store_url: str, durability: str = "ack"
) -> Path:
    """A complete configuration enabling ``role`` only, listening on ``port``."""
    path = directory / f"{role}.toml"
    text = STORE_CONFIG.format(store_url=store_url, durability=durability)
    path.write_text(text + "\n" + ROLE_CONFIG[role].format(port=port))
    return path


def write_exchange_config(directory: Path, port: int, store_url: str, durability: str) -> Path:
    return write_config(directory, "exchange", port, store_url, durability)


@contextlib.contextmanager
def cookiematch(
    directory: Path,
    store_url: str,
    *,
    role: str = "exchange",
    workers: int = 1,
    durability: str = "ack",
    loop: str | None = None,
    extra_path: Sequence[str] = (),
    extra_config: str = "",
) -> Iterator[Service]:
    """``cookiematch serve --role ROLE`` on a free port (``loop`` given: granian's own CLI
    with ``--loop``, same app factory), ``extra_config`` appended to its configuration.
    Yields the running Service."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = write_config(directory, role, port, store_url, durability)
    if extra_config:
        config.write_text(config.read_text() + "\n" + extra_config)
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([*extra_path, env.get("PYTHONPATH", "")])
    if loop is None:
        args = [str(VENV_BIN / "cookiematch"), "serve", "--config", str(config)]
        args += ["--role", role, "--workers", str(workers)]
    else:
        env["COOKIEMATCH_CONFIG"] = str(config)
        env["COOKIEMATCH_APP_FACTORY"] = f"cookiematch.roots.{role}:app"
        args = [str(VENV_BIN / "granian"), "--interface", "rsgi", "--factory"]
        args += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        args += ["--loop", loop, "--no-ws", "cookiematch.web.server:rsgi_app"]
    log_path = directory / f"{role}-server.log"
    log = log_path.open("ab")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    service = Service(role, port, proc, config, store_url, workers, log_path)
    try:
        try:
            wait_http(f"http://127.0.0.1:{port}/", timeout=30)
        except RuntimeError:
            log.flush()
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{role} did not start; its log ends:\n{tail}") from None
        deadline = time.monotonic() + 10  # every worker up
        while len(service.worker_pids()) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        yield service
    finally:
        stop(proc, timeout=40)
        log.close()


# --- wrk ---------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float  # the slowest answer of the run (wrk's thread stats)
    requests: int
    non_3xx: int
    socket_errors: int

    @classmethod
    def parse(cls, out: str) -> WrkResult:
        def pct(p: str) -> float:
            found = re.search(rf"^\s+{p}%\s+(\S+)", out, re.M)
            return _ms(found.group(1)) if found else float("nan")

        stats = re.search(r"^\s+Latency\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+\w+)", out, re.M)
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        non = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errs = re.search(
            r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
        )
        return cls(
            rps=rps,
            p50_ms=pct("50"),
            p90_ms=pct("90"),
            p99_ms=pct("99"),
            max_ms=_ms(stats.group(1)) if stats else float("nan"),
            requests=requests,
            non_3xx=int(non.group(1)) if non else 0,
            socket_errors=sum(map(int, errs.groups())) if errs else 0,
        )


def wrk(
    port: int,
    script: Path,
    *,
    duration: float,
    connections: int,
    threads: int = 2,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> WrkResult:
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    cmd += ["-s", str(script), f"http://127.0.0.1:{port}", "--", *args]
    run = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {run.stderr.strip() or run.stdout.strip()}")
    out = run.stdout
    return WrkResult.parse(out)
