"""SIGTERM under keep-alive load through a real granian server (``web/drain.py``): every
request written on an open connection is answered; the server closes connections only after
an answer that says so, or before the client wrote."""

from __future__ import annotations

import select
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import ServerProcess, free_port
from support.configs import write_exchange_config

HERE = Path(__file__).resolve().parent
CLIENTS = 16
REQUEST = b"GET /match HTTP/1.1\r\nHost: x\r\n\r\n"


def read_head(sock: socket.socket) -> bytes | None:
    """The answer's head, lower-cased, its body read too; None if the connection ended first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.lower().split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head.lower()


class KeepAliveClients:
    """``CLIENTS`` threads sending requests in a loop, each on one connection while it lasts.

    Outcomes: ``answered`` (kept open), ``answered_close`` (the answer said
    ``Connection: close``; ``left_open`` if the server did not close it then),
    ``closed_before_sent`` (the server had closed the connection before
    the request was written), ``unanswered`` (written, then the connection ended without an
    answer), ``refused``. A closed connection is replaced until ``reconnect_until``
    (monotonic), as a load balancer keeps sending for a moment after the drain begins.
    """

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.outcomes: Counter[str] = Counter()
        self.reconnect_until = float("inf")
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(CLIENTS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a client is still running"

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1

    def _run(self) -> None:
        sock: socket.socket | None = None
        while True:
            if sock is None:
                if time.monotonic() > self.reconnect_until:
                    return
                try:
                    sock = socket.create_connection((self.server.host, self.server.port), 5)
                except OSError:
                    self._count("refused")
                    return
            if select.select([sock], [], [], 0)[0]:  # readable before we wrote: closed
                self._count("closed_before_sent")
                sock.close()
                sock = None
                continue
            try:
                sock.sendall(REQUEST)
                head = read_head(sock)
            except OSError:
                head = None
            if head is None:
                self._count("unanswered")
            elif b"connection: close" in head:
                self._count("answered_close")
                sock.settimeout(2)
                if sock.recv(1) != b"":  # the server closes it after such an answer
                    self._count("left_open")
            else:
                self._count("answered")
                continue
            sock.close()
            sock = None


@pytest.mark.parametrize(("interface", "workers"), [("rsgi", 1), ("asgi", 1), ("rsgi", 2)])
def test_sigterm_under_keep_alive_load_leaves_no_request_unanswered(
    interface: str, workers: int, start_server: Callable[..., ServerProcess]
) -> None:
    argv = [sys.executable, "-m", "cookiematch.web.server", "--factory", "sample_app:make_app"]
    argv += ["--port", "{port}", "--interface", interface, "--workers", str(workers)]
    argv += ["--drain-seconds", "5"]
    server = start_server(argv, pythonpath=[HERE])
    clients = KeepAliveClients(server)
    clients.start()
    time.sleep(0.5)
    clients.reconnect_until = time.monotonic() + 1.0
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0, server.output()
    clients.join(10)
    outcomes = clients.outcomes
    assert outcomes["unanswered"] == 0 and outcomes["left_open"] == 0, outcomes
    assert outcomes["answered"] > 0, outcomes
    assert outcomes["answered_close"] >= CLIENTS, outcomes  # each connection told, then closed
    assert "draining" in server.output()


def test_readyz_answers_503_while_draining(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    port = free_port()
    config = write_exchange_config(tmp_path, port)
    argv = [sys.executable, "-m", "cookiematch", "serve", "--config", str(config)]
    server = start_server([*argv, "--drain-seconds", "5"], port=port)
    with httpx.Client(base_url=server.url, timeout=5) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.headers.get("connection") != "close"
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while (draining := client.get("/readyz")).status_code == 200:
            assert time.monotonic() < deadline, "/readyz still 200 while draining"
            time.sleep(0.02)
        assert draining.status_code == 503
        assert draining.headers["connection"] == "close"
        pixel = client.get("/pixel?google_nid=ad_network_xyz&google_cm")  # still served
        assert pixel.status_code == 302
    assert server.proc.wait(20) == 0, server.output()


@pytest.mark.parametrize("interface", ["rsgi", "asgi"])
def test_every_kind_of_answer_closes_its_connection_while_draining(
    interface: str, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(factory="sample_app:make_app", interface=interface, pythonpath=[HERE])
    with httpx.Client(base_url=server.url, timeout=5) as client:
        assert client.get("/admin/ping").headers.get("connection") != "close"
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while client.get("/match").headers.get("connection") != "close":
            assert time.monotonic() < deadline, "not draining"
        # a hot route, a 404, the fallback app buffered and streamed
        for path in ("/match", "/nope", "/admin/ping", "/admin/bigstream"):
            answer = client.get(path)
            assert answer.headers.get("connection") == "close", (path, answer.headers)
        assert answer.content == b"".join(bytes([65 + i % 26]) * 1024 for i in range(100))
    assert server.proc.wait(20) == 0, server.output()
