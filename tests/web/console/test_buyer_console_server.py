"""The buyer's console through a real ``cookiematch serve`` process: the admin token logs in,
the page and its series answer; no other token does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from conftest import ServerProcess, free_port
from support.configs import buyer_config, serve_argv
from support.console import csrf_of, log_in


def test_the_buyers_console(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    port = free_port()
    config = buyer_config(tmp_path, port)
    start_server(argv=serve_argv(config, "buyer"), port=port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        assert log_in(http, "cmk_not-a-credential-0123456789").status_code == 401
        assert log_in(http).headers["location"] == "/console/buyer"
        page = http.get("/console/buyer")
        assert page.status_code == 200 and csrf_of(page.text)
        assert "share=matched" in page.text
        series = http.get("/console/api/series?name=buyer_lookup&minutes=5&share=matched")
        assert series.status_code == 200 and series.json()["counter"] is False
        assert http.get("/console/exchange").status_code == 404
