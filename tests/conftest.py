"""Shared test support: free ports and real server processes.

``running_server(...)`` starts a real server in a child process (its own process group), waits
until its port accepts connections, and stops it on exit: SIGTERM (graceful, shutdown hooks
run), then SIGKILL to the whole group after a timeout. ``ServerProcess.kill9()`` simulates a
crash (SIGKILL to the group, no hooks). The ``start_server`` fixture wraps it with cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence, Sized
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


class ServerProcess:
    """A started server child: ``url``, ``host``, ``port``, ``proc``, its output so far."""

    def __init__(self, proc: subprocess.Popen[bytes], host: str, port: int, log: Any) -> None:
        self.proc = proc
        self.host = host
        self.port = port
        self._log = log
        bracket = f"[{host}]" if ":" in host else host
        self.url = f"http://{bracket}:{port}"

    def output(self) -> str:
        """Everything the child wrote to stdout and stderr so far."""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode} before listening:\n{self.output()}"
                )
            if port_open(self.host, self.port):
                return
            time.sleep(0.05)
        self.kill9()
        raise RuntimeError(f"server not listening after {timeout}s:\n{self.output()}")

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait (graceful); SIGKILL the group if still alive after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._kill_group()  # leftover workers, if any
        return self.proc.returncode

    def kill9(self, timeout: float = 5.0) -> None:
        """SIGKILL the server and every process of its group: a crash, no shutdown hooks.

        Returns once the group is gone (workers included), or after ``timeout``.
        """
        self._kill_group()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.02)

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def load_then_kill(
    server: ServerProcess,
    browser: Callable[[int, httpx.AsyncClient], Awaitable[None]],
    acknowledged: Sized,
    *,
    browsers: int = 16,
    acks: int = 300,
) -> None:
    """``browsers`` concurrent ``browser(number, http)`` loops against ``server``, which is
    killed with SIGKILL once ``acknowledged`` holds ``acks`` answers (the kill -9 tests)."""

    async def run() -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            tasks = [asyncio.create_task(browser(n, http)) for n in range(browsers)]
            while len(acknowledged) < acks:
                await asyncio.sleep(0.01)
            server.kill9()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())


def start_server_process(
    argv: Sequence[str] | None = None,
    *,
    factory: str | None = None,
    interface: str = "rsgi",
    config: str | os.PathLike[str] | None = None,
    pythonpath: Sequence[str | os.PathLike[str]] = (),
    env: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    workers: int = 1,
    startup_timeout: float = 20.0,
) -> ServerProcess:
    """Start a server child and wait until it listens.

    Either ``argv`` (``{host}`` and ``{port}`` are substituted in each item), or ``factory``
    (``"module:function"`` returning an App, served by ``python -m cookiematch.web.server``).
    """
    port = port or free_port(host)
    if argv is None:
        if factory is None:
            raise ValueError("give argv or factory")
        argv = [
            sys.executable, "-m", "cookiematch.web.server", "--factory", factory,
            "--host", host, "--port", str(port), "--interface", interface,
            "--workers", str(workers),
        ]  # fmt: skip
        if config is not None:
            argv += ["--config", str(config)]
    else:
        argv = [item.format(host=host, port=port) for item in argv]
    child_env = dict(os.environ)
    child_env.update(env or {})
    paths = [str(p) for p in pythonpath] + [str(REPO / "src")]
    if child_env.get("PYTHONPATH"):
        paths.append(child_env["PYTHONPATH"])
    child_env["PYTHONPATH"] = os.pathsep.join(paths)
    child_env["PYTHONUNBUFFERED"] = "1"
    log = tempfile.NamedTemporaryFile(prefix="server-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        argv, cwd=REPO, env=child_env, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    server = ServerProcess(proc, host, port, log)
    server.wait_ready(startup_timeout)
    return server


@contextlib.contextmanager
def running_server(*args: Any, **kwargs: Any) -> Iterator[ServerProcess]:
    """``start_server_process`` as a context manager that always stops the server."""
    server = start_server_process(*args, **kwargs)
    try:
        yield server
    finally:
        server.terminate()


def _starter() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(*args: Any, **kwargs: Any) -> ServerProcess:
        server = start_server_process(*args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.terminate()


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    """Start real servers (same arguments as ``start_server_process``); stopped at teardown."""
    yield from _starter()


@pytest.fixture(scope="module")
def start_module_server() -> Iterator[Callable[..., ServerProcess]]:
    """``start_server`` for servers shared by a whole test module."""
    yield from _starter()
