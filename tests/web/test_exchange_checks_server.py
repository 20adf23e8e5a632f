"""A served exchange applies its frequency-capping checks in a child process of each worker
(``exchange/check_process.py``), on SQLite and on Redis: each worker starts its child before
its first request, a repeated match tag is counted as a violation, and a graceful stop leaves
none of those children behind."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from storage.redis_servers import RedisServer

from conftest import ServerProcess, free_port
from support.configs import ADMIN_TOKEN, serve_argv, write_exchange_config
from support.stores import shared_redis  # noqa: F401

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BROWSER = "cm_id=AAECAwQFBgcICQoLDA0ODw"  # a valid exchange cookie: one browser throughout


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found |= {child, *descendants(child)}
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def violations(server: ServerProcess) -> int:
    response = httpx.get(server.url + "/admin/v1/buyers/ad_network_xyz/stats", headers=AUTH)
    assert response.status_code == 200, response.text
    count: int = response.json()["frequency_cap_violations"]
    return count


def children_spawned(pid: int) -> set[int]:
    return {child for child in descendants(pid) if "spawn_main" in cmdline(child)}


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_checks_in_a_child_start_with_each_worker_count_a_repeat_and_end_with_the_server(
    store: str,
    tmp_path: Path,
    start_server: Callable[..., ServerProcess],
    request: pytest.FixtureRequest,
) -> None:
    port = free_port()
    config = write_exchange_config(tmp_path, port)
    if store == "redis":
        redis: RedisServer = request.getfixturevalue("shared_redis")
        with redis.client() as client:
            client.flushall()
        config.write_text(
            config.read_text().replace(
                f'url = "sqlite:///{tmp_path / "exchange.db"}"', f'url = "{redis.url}"'
            )
        )
    server = start_server(argv=serve_argv(config, "exchange", "--workers", "2"), port=port)
    deadline = time.monotonic() + 20
    while len(children_spawned(server.proc.pid)) < 2:  # each worker's, before any match tag
        assert time.monotonic() < deadline, "a worker started without its checks process"
        time.sleep(0.2)
    before = violations(server)
    with httpx.Client(base_url=server.url, headers={"Cookie": BROWSER}) as browser:
        for _ in range(2):
            answer = browser.get("/pixel?google_nid=ad_network_xyz&google_cm")
            assert answer.status_code == 302
    deadline = time.monotonic() + 10
    while violations(server) == before:
        assert time.monotonic() < deadline, "the repeat was never counted"
        time.sleep(0.2)
    assert violations(server) == before + 1
    below = descendants(server.proc.pid)
    assert len(children_spawned(server.proc.pid)) == 2  # none replaced by the batches
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(20)
    deadline = time.monotonic() + 5
    while (left := {pid for pid in below if Path(f"/proc/{pid}").exists()}) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert not left, f"processes left behind: {left}"
