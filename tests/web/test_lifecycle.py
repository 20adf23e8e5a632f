"""Adapter lifecycles: ASGI lifespan in-process; real processes for SIGTERM, kill -9, workers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from cookiematch.web.asgi import ASGIAdapter
from cookiematch.web.router import App

from conftest import ServerProcess, free_port, port_open

HERE = Path(__file__).resolve().parent


async def test_asgi_lifespan_runs_hooks() -> None:
    calls: list[str] = []

    async def up() -> None:
        calls.append("up")

    async def down() -> None:
        calls.append("down")

    adapter = ASGIAdapter(App(on_startup=[up], on_shutdown=[down]))
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await adapter({"type": "lifespan"}, receive, send)
    assert calls == ["up", "down"]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_asgi_lifespan_startup_failure_is_reported() -> None:
    async def broken() -> None:
        raise RuntimeError("store unreachable")

    adapter = ASGIAdapter(App(on_startup=[broken]))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        sent.append(message)

    await adapter({"type": "lifespan"}, receive, send)
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "store unreachable" in sent[0]["message"]


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
def test_sigterm_runs_shutdown_hooks(
    interface: str, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    marker = tmp_path / "marker"
    server = start_server(
        factory="sample_app:make_app",
        interface=interface,
        pythonpath=[HERE],
        env={"SAMPLE_MARKER": str(marker)},
    )
    assert httpx.get(f"{server.url}/match").status_code == 302
    assert server.terminate() == 0, server.output()
    assert marker.read_text() == "startup\nshutdown\n"


def test_kill9_stops_everything_without_hooks(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    marker = tmp_path / "marker"
    server = start_server(
        factory="sample_app:make_app",
        pythonpath=[HERE],
        workers=2,
        env={"SAMPLE_MARKER": str(marker)},
    )
    assert httpx.get(f"{server.url}/match").status_code == 302
    server.kill9()
    assert server.proc.returncode == -9
    assert not port_open(server.host, server.port)  # workers died with the group
    assert "startup" in marker.read_text()
    assert "shutdown" not in marker.read_text()  # a crash runs no hook


def test_bare_app_unknown_path_is_404(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(factory="sample_app:make_bare_app", pythonpath=[HERE])
    r = httpx.get(f"{server.url}/admin/ping")
    assert (r.status_code, r.text) == (404, "not found\n")
    assert httpx.get(f"{server.url}/match").status_code == 302


def test_bad_factory_fails_at_start() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cookiematch.web.server", "--factory", "sample_app:nope"],
        env={**os.environ, "PYTHONPATH": _pythonpath()},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "nope" in result.stderr


def test_config_path_reaches_the_factory(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = tmp_path / "cookiematch.toml"
    config.write_text("")
    server = start_server(factory="sample_app:make_config_app", pythonpath=[HERE], config=config)
    assert httpx.get(f"{server.url}/config").text == str(config.resolve())


def _pythonpath() -> str:
    return os.pathsep.join([str(HERE), str(HERE.parents[1] / "src")])


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
def test_failing_startup_hook_stops_the_server(interface: str) -> None:
    argv = [sys.executable, "-m", "cookiematch.web.server", "--port", str(free_port())]
    argv += ["--factory", "sample_app:make_failing_app", "--interface", interface]
    result = subprocess.run(
        argv,
        env={**os.environ, "PYTHONPATH": _pythonpath()},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "startup failed" in output or "store unreachable" in output, output


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
def test_sigterm_drains_in_flight_requests_before_shutdown_hooks(
    interface: str, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    marker = tmp_path / "marker"
    server = start_server(
        factory="sample_app:make_slow_app",
        interface=interface,
        pythonpath=[HERE],
        env={"SAMPLE_MARKER": str(marker)},
    )
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.get, f"{server.url}/slow", timeout=10)
        time.sleep(0.3)
        assert server.terminate() == 0, server.output()
        assert pending.result().status_code == 204
    assert marker.read_text() == "slow done\nshutdown\n"


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
def test_a_client_gone_mid_body_is_not_an_error(
    interface: str, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(factory="sample_app:make_app", interface=interface, pythonpath=[HERE])
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
        time.sleep(0.3)
    time.sleep(0.5)
    assert httpx.post(f"{server.url}/echo", content=b"hello").status_code == 200
    assert server.terminate() == 0
    output = server.output()
    assert " ERROR " not in output and "Traceback" not in output, output


def test_a_half_sent_request_head_does_not_hold_the_connection(
    start_server: Callable[..., ServerProcess],
) -> None:
    argv = [sys.executable, "-m", "cookiematch.web.server", "--factory", "sample_app:make_app"]
    argv += ["--port", "{port}", "--idle-timeout-ms", "1000"]
    server = start_server(argv, pythonpath=[HERE])
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(b"GET /match HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        sock.settimeout(5)
        start = time.monotonic()
        while sock.recv(4096):  # whatever the server says before it closes
            pass
        assert time.monotonic() - start < 3  # closed after about the 1 s allowed
    assert httpx.get(f"{server.url}/match").status_code == 302
