"""A second ``cookiematch serve`` on a port another server holds refuses to start."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx

from conftest import ServerProcess, free_port
from support.configs import serve_argv, write_exchange_config


def test_a_taken_port_is_refused_with_a_clear_message(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    port = free_port()
    config = write_exchange_config(tmp_path, port)
    first = start_server(serve_argv(config, "exchange"), port=port)
    second = subprocess.run(
        serve_argv(config, "exchange"), capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in second.stderr, second.stderr
    assert httpx.get(f"{first.url}/admin/v1/health").status_code == 200  # the first serves on
