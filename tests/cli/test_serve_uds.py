"""``cookiematch serve --uds``: the exchange on a Unix socket, one server per socket."""

from __future__ import annotations

import socket
import stat
import subprocess
from pathlib import Path

import httpx

from conftest import free_port
from support.configs import serve_argv, write_exchange_config
from support.edge import server_on_socket


def test_a_unix_socket_is_served_and_a_second_server_refused(tmp_path: Path) -> None:
    """A socket file nobody listens on (a killed server's) is replaced; the server answers on
    it; a second server on the same socket refuses to start."""
    config = write_exchange_config(tmp_path, free_port())
    path = tmp_path / "exchange.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))  # bound, never listened on, closed: left behind
    with server_on_socket(config, path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, base_url="http://exchange") as client:
            assert client.get("/livez").status_code == 200
        second = subprocess.run(
            [*serve_argv(config, "exchange"), "--uds", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert f"{path} is already in use" in second.stderr, second.stderr
