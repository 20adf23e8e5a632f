"""Held connections through a real granian server: idle ones cannot starve a new client, and
every connection waiting for a request head is closed after the idle timeout
(``web/connections.py``)."""

from __future__ import annotations

import contextlib
import resource
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import ServerProcess

HERE = Path(__file__).resolve().parent
REQUEST = b"GET /match HTTP/1.1\r\nHost: x\r\n\r\n"
HELD = 2000


def server_argv(*options: str) -> list[str]:
    argv = [sys.executable, "-m", "cookiematch.web.server", "--factory", "sample_app:make_app"]
    return [*argv, "--port", "{port}", *options]


@pytest.fixture
def open_files() -> None:
    """Room in this process for the held connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = HELD + 256
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"the open-files hard limit {hard} is below {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@contextlib.contextmanager
def held(server: ServerProcess, count: int, *, used: bool) -> Iterator[list[socket.socket]]:
    """``count`` idle connections: new ones that send nothing, or ``used`` ones that had one
    request answered."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection((server.host, server.port), timeout=5)
            sockets.append(sock)
            if used:
                sock.sendall(REQUEST)
                assert sock.recv(4096).startswith(b"HTTP/1.1 302")
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def answered_within(server: ServerProcess, seconds: float) -> float:
    """Seconds a new client waited for its answer (fails past ``seconds``)."""
    start = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=seconds) as sock:
        sock.sendall(b"GET /match HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        try:
            head = sock.recv(4096)
        except TimeoutError:
            pytest.fail(f"a new client got no answer within {seconds} s")
    assert head.startswith(b"HTTP/1.1 302"), head
    return time.monotonic() - start


def closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closed ``sock`` (fails past ``limit``)."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        pytest.fail(f"the connection was still open after {limit} s")
    except ConnectionResetError:
        pass
    return time.monotonic() - start


@pytest.mark.usefixtures("open_files")
def test_two_thousand_idle_connections_do_not_starve_a_new_client(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(server_argv(), pythonpath=[HERE])  # the defaults, one worker
    with (
        held(server, HELD // 2, used=False) as fresh,
        held(server, HELD // 2, used=True) as used,
    ):
        assert answered_within(server, 1.0) < 1.0
        for sock in (fresh[0], fresh[-1], used[0], used[-1]):  # still held, still served
            sock.sendall(REQUEST)
            sock.settimeout(5)
            assert sock.recv(4096).startswith(b"HTTP/1.1 302")


def test_idle_connections_are_closed_after_the_idle_timeout(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(server_argv("--idle-timeout-ms", "1000"), pythonpath=[HERE])
    with held(server, 1, used=False) as fresh, held(server, 1, used=True) as used:
        assert closed_after(fresh[0], 5) < 3  # never sent a byte
        assert closed_after(used[0], 5) < 3  # idle after its keep-alive request
    assert answered_within(server, 1.0) < 1.0


def test_at_the_connection_limit_a_new_client_waits_at_most_the_idle_timeout(
    start_server: Callable[..., ServerProcess],
) -> None:
    options = ("--idle-timeout-ms", "1000", "--max-connections", "50")
    server = start_server(server_argv(*options), pythonpath=[HERE])
    with held(server, 50, used=False):
        waited = answered_within(server, 5.0)  # accepted once the idle ones are closed
    assert waited < 3
