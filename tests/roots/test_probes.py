"""``/livez`` and ``/readyz`` of a real server: ready while its store answers, not ready within
about a second of the store going away, ready again once it is back."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from storage.redis_servers import RedisServer, require_redis

from conftest import ServerProcess, free_port
from support.configs import serve_argv, write_exchange_config


def buyer_config(directory: Path, port: int, store_url: str) -> Path:
    path = directory / "buyer.toml"
    path.write_text(f"""
[store]
url = "{store_url}"

[buyer]
listen = "127.0.0.1:{port}"
nid = "probe-buyer"
exchange_url = "https://exchange.example/pixel"
""")
    return path


def until(url: str, status: int, within: float) -> float:
    """Seconds until ``url`` answers ``status`` (fails after ``within``)."""
    start = time.monotonic()
    while True:
        if httpx.get(url, timeout=2).status_code == status:
            return time.monotonic() - start
        assert time.monotonic() - start < within, f"{url} never answered {status}"
        time.sleep(0.05)


def test_an_exchange_on_sqlite_is_live_and_ready(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    port = free_port()
    server = start_server(serve_argv(write_exchange_config(tmp_path, port), "exchange"), port=port)
    live = httpx.get(f"{server.url}/livez")
    assert (live.status_code, live.json()) == (200, {"status": "live"})
    ready = httpx.get(f"{server.url}/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


def test_readiness_follows_the_store(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    require_redis()
    redis = RedisServer(tmp_path / "redis")
    try:
        port = free_port()
        config = buyer_config(tmp_path, port, redis.url)
        server = start_server(serve_argv(config, "buyer", "--workers", "2"), port=port)
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        redis.kill9()
        assert until(f"{server.url}/readyz", 503, within=2.0) < 2.0
        assert httpx.get(f"{server.url}/livez").status_code == 200  # alive all along
        redis.start()
        back = time.monotonic()
        assert until(f"{server.url}/readyz", 200, within=2.0) < 2.0
        # both workers see it back: soon ten probes in a row (spread over both) are ready
        streak = 0
        while streak < 10:
            streak = streak + 1 if httpx.get(f"{server.url}/readyz").status_code == 200 else 0
            assert time.monotonic() - back < 3.0, "a worker is still not ready"
    finally:
        redis.stop()
