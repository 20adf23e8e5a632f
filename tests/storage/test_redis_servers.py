"""The test suite's redis-server helper (``redis_servers.py``) on a busy machine: a port taken
between its check and the server's bind (by another server, or a cluster bus port by any
socket) is seen as taken, never mistaken for the server's own, and another port is tried."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import redis_servers
from .redis_servers import BUS_OFFSET, PortTaken, RedisServer, free_port, require_redis

CLUSTER_ARGS = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[RedisServer]:
    """Another redis-server, on the port the test makes the helper pick."""
    require_redis()
    server = RedisServer(tmp_path / "holder")
    yield server
    server.stop()


def test_a_port_held_by_another_server_is_taken_not_answered_for(
    tmp_path: Path, holder: RedisServer
) -> None:
    with pytest.raises(PortTaken, match=f"port {holder.port} "):
        RedisServer(tmp_path / "late", port=holder.port)


def test_a_cluster_nodes_bus_port_held_is_taken(tmp_path: Path) -> None:
    require_redis()
    port = free_port(cluster=True)
    with socket.socket() as bus:
        bus.bind(("127.0.0.1", port + BUS_OFFSET))
        bus.listen()
        with pytest.raises(PortTaken):
            RedisServer(tmp_path / "node", CLUSTER_ARGS, port=port)


def test_a_port_taken_since_its_check_is_replaced(
    tmp_path: Path, holder: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    picks = iter([holder.port])  # the first pick: taken by the time the server binds it

    def pick(cluster: bool = False) -> int:
        return next(picks, None) or free_port(cluster)

    monkeypatch.setattr(redis_servers, "free_port", pick)
    server = RedisServer(tmp_path / "server")
    try:
        assert server.port != holder.port
        with server.client() as client:
            assert client.info("server")["process_id"] == server.proc.pid  # type: ignore[union-attr]
    finally:
        server.stop()


def test_ports_stay_below_the_ephemeral_range() -> None:
    low = redis_servers._ephemeral_low()
    assert all(free_port() < low for _ in range(50))
    assert all(free_port(cluster=True) + BUS_OFFSET < low for _ in range(50))
