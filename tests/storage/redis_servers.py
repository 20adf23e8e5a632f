"""Real ``redis-server`` processes for the tests and benchmarks: standalone and a cluster.

Without the binary the tests skip, except under ``CI=true`` where they fail. Each server runs
in its own directory on a free port, in its own process group; ``kill9`` simulates a crash and
``restart`` brings it back on the same port and directory (AOF and ``nodes.conf`` included).

Ports are chosen below the kernel's ephemeral range (where outgoing connections take ports at
any moment, between the check that a port is free and the server's bind), cluster bus ports
(+10000) included; a port taken all the same (by another test run's server, say) is seen in
the server's log and another is tried. A server is ready when *its* process answers (not
another server that holds the port). A wait that runs out says what it waited for.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def require_redis() -> None:
    """Skip (fail under CI=true) when redis-server or redis-cli is missing."""
    if REDIS_SERVER and REDIS_CLI:
        return
    import pytest

    message = "redis-server/redis-cli not found (apt-get install redis-server)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


BUS_OFFSET = 10000  # a cluster node's bus port is its port + 10000
PORT_ATTEMPTS = 10  # ports tried before giving up (each taken since its check)
START_TIMEOUT = 30.0  # seconds for a server to answer, on a loaded machine


class PortTaken(RuntimeError):
    """The server could not bind its port or its bus port: another process took it first."""


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux; 32768 elsewhere)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


def _port_range(cluster: bool) -> range:
    """Ports below the ephemeral range, their bus ports too for a cluster node (else, on a
    system whose ephemeral range starts too low for that, the old 20000-55535)."""
    top = _ephemeral_low() - (BUS_OFFSET if cluster else 0)
    if top - 10000 >= 1000:
        return range(10000, top)
    return range(20000, 65536 - BUS_OFFSET)


def free_port(cluster: bool = False) -> int:
    """A port free a moment ago, below the ephemeral range; for a cluster node also its bus
    port (+10000)."""
    ports = _port_range(cluster)
    while True:
        port = random.choice(ports)
        if _bindable(port) and (not cluster or _bindable(port + BUS_OFFSET)):
            return port


class RedisServer:
    """One redis-server child: ``port``, ``url``, ``client()``; started by the constructor (on
    another free port when the one chosen is taken before the server binds it)."""

    def __init__(self, directory: Path, args: Sequence[str] = (), port: int | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        for attempt in range(1 if port else PORT_ATTEMPTS):
            self.port = port or free_port(cluster="--cluster-enabled" in args)
            self.url = f"redis://127.0.0.1:{self.port}/0"
            try:
                self.start()
                return
            except PortTaken:
                if port or attempt == PORT_ATTEMPTS - 1:
                    raise

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the server and wait until its own process answers; PortTaken when it could
        not bind, RuntimeError (with its log) when it exits or does not answer in time."""
        assert REDIS_SERVER
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.dir), "--save", "", "--appendonly", "no", *self.args]
        path = self.dir / "redis.log"
        offset = path.stat().st_size if path.exists() else 0
        log = open(path, "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        started = time.monotonic()
        while not self._answers():
            code = self.proc.poll()
            if code is not None:
                text = self.log(offset)
                if "Address already in use" in text:
                    raise PortTaken(f"port {self.port} or its bus port was taken: {text}")
                raise RuntimeError(f"redis-server on port {self.port} exited ({code}): {text}")
            if time.monotonic() - started > timeout:
                self.kill9()
                load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
                raise RuntimeError(
                    f"redis-server on port {self.port} did not answer within {timeout:.0f} s "
                    f"(load average {load}): {self.log(offset)}"
                )
            time.sleep(0.02)

    def _answers(self) -> bool:
        """Whether this server's own process answers (not another that holds the port)."""
        assert self.proc is not None
        once = Retry(NoBackoff(), 0)  # a poll: no retries (each ~4 s on a port not yet open)
        client = redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=1, retry=once)
        with contextlib.suppress(redis.RedisError), client:
            return int(client.info("server")["process_id"]) == self.proc.pid
        return False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=1)

    def log(self, offset: int = 0) -> str:
        """The server's log (from ``offset``: this start's), its last 2000 characters."""
        with open(self.dir / "redis.log", "rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace")[-2000:]

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill9()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


class RedisClusterProcesses:
    """``masters`` masters with ``replicas`` replicas each, formed with ``redis-cli --cluster``.

    ``node_timeout_ms``: how long a node may go unanswered before the others mark it failing
    (and fail it over to a replica). The default, short, is for the failover tests; a cluster
    without replicas has no failover to wait for, and a short timeout only marks the cluster
    down while a loaded machine stalls a node: it takes a long one."""

    def __init__(
        self,
        directory: Path,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
    ) -> None:
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", str(node_timeout_ms)]
        args += ["--cluster-replica-validity-factor", "0"]
        self.servers: list[RedisServer] = []
        try:
            for i in range(masters * (1 + replicas)):
                self.servers.append(RedisServer(directory / f"node{i}", args))
            assert REDIS_CLI
            addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
            argv = [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas",
                    str(replicas), "--cluster-yes"]  # fmt: skip
            try:
                subprocess.run(argv, check=True, capture_output=True, timeout=120)
            except subprocess.SubprocessError as exc:
                output = getattr(exc, "stdout", b"") or b""
                output += getattr(exc, "stderr", b"") or b""
                raise RuntimeError(
                    f"redis-cli --cluster create failed ({exc}): "
                    f"{output.decode(errors='replace')[-2000:]}"
                ) from exc
            self.wait_ok(len(self.servers))
        except BaseException:
            self.stop()
            raise
        self.url = "redis+cluster://" + ",".join(addresses[:2])

    def live(self) -> list[RedisServer]:
        return [s for s in self.servers if s.proc is not None and s.proc.poll() is None]

    def wait_ok(self, nodes: int, timeout: float = 60.0) -> None:
        """Until every live node says ``cluster_state:ok`` and sees ``nodes`` nodes in sync;
        RuntimeError naming each node's state when ``timeout`` runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._state(s, nodes) == "ok" for s in self.live()):
                return
            time.sleep(0.1)
        states = "; ".join(f"{s.port}: {self._state(s, nodes)}" for s in self.live())
        load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
        raise RuntimeError(
            f"redis cluster not ok within {timeout:.0f} s (load average {load}): {states}"
        )

    @staticmethod
    def _state(server: RedisServer, nodes: int) -> str:
        """``ok``, or what is not yet."""
        try:
            with server.client() as client:
                info = client.execute_command("CLUSTER", "INFO").decode()
                state = dict(line.split(":", 1) for line in info.split() if ":" in line)
                known = int(state.get("cluster_known_nodes", 0))
                if state.get("cluster_state") != "ok" or known < nodes:
                    return f"cluster_state {state.get('cluster_state')}, {known}/{nodes} known"
                repl = client.info("replication")
                if repl["role"] == "master" or repl.get("master_link_status") == "up":
                    return "ok"
                return f"replica, link {repl.get('master_link_status')}"
        except redis.RedisError as exc:
            return f"no answer ({exc})"

    def masters(self) -> list[RedisServer]:
        out = []
        for server in self.live():
            with contextlib.suppress(redis.RedisError), server.client() as client:
                if client.info("replication")["role"] == "master":
                    out.append(server)
        return out

    def flushall(self) -> None:
        for server in self.masters():
            with server.client() as client:
                client.flushall()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
