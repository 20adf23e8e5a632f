"""Real ``redis-server`` processes for the tests and benchmarks: standalone and a cluster.

Without the binary the tests skip, except under ``CI=true`` where they fail. Each server runs
in its own directory on a free port, in its own process group; ``kill9`` simulates a crash and
``restart`` brings it back on the same port and directory (AOF and ``nodes.conf`` included).
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


def free_port(cluster: bool = False) -> int:
    """A free port; for a cluster node also its bus port (+10000), so at most 55535."""
    while True:
        port = random.randrange(20000, 55535)
        if _bindable(port) and (not cluster or _bindable(port + 10000)):
            return port


class RedisServer:
    """One redis-server child: ``port``, ``url``, ``client()``; started by the constructor."""

    def __init__(self, directory: Path, args: Sequence[str] = (), port: int | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port(cluster="--cluster-enabled" in args)
        self.args = list(args)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self, timeout: float = 10.0) -> None:
        assert REDIS_SERVER
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.dir), "--save", "", "--appendonly", "no", *self.args]
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.RedisError), self.client() as client:
                if client.ping():
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.log()}")
            time.sleep(0.02)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=1)

    def log(self) -> str:
        return (self.dir / "redis.log").read_text(errors="replace")[-2000:]

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
    """``masters`` masters with ``replicas`` replicas each, formed with ``redis-cli --cluster``."""

    def __init__(self, directory: Path, masters: int = 3, replicas: int = 1) -> None:
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0"]
        self.servers: list[RedisServer] = []
        try:
            for i in range(masters * (1 + replicas)):
                self.servers.append(RedisServer(directory / f"node{i}", args))
            assert REDIS_CLI
            addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
            subprocess.run(
                [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas",
                 str(replicas), "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            self.wait_ok(len(self.servers))
        except BaseException:
            self.stop()
            raise
        self.url = "redis+cluster://" + ",".join(addresses[:2])

    def live(self) -> list[RedisServer]:
        return [s for s in self.servers if s.proc is not None and s.proc.poll() is None]

    def wait_ok(self, nodes: int, timeout: float = 30.0) -> None:
        """Until every live node says ``cluster_state:ok`` and sees ``nodes`` nodes in sync."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._ok(s, nodes) for s in self.live()):
                return
            time.sleep(0.1)
        raise RuntimeError("redis cluster did not become ok")

    @staticmethod
    def _ok(server: RedisServer, nodes: int) -> bool:
        with contextlib.suppress(redis.RedisError), server.client() as client:
            info = client.execute_command("CLUSTER", "INFO").decode()
            state = dict(line.split(":", 1) for line in info.split() if ":" in line)
            if state.get("cluster_state") != "ok" or int(state["cluster_known_nodes"]) < nodes:
                return False
            repl = client.info("replication")
            return repl["role"] == "master" or repl.get("master_link_status") == "up"
        return False

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
