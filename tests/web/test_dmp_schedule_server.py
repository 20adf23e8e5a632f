"""A real ``cookiematch serve --role dmp --workers 2`` keeps segments fresh by itself: impression
events stored without any ingestion join their segment at the first scheduled recompute, which
one worker runs; SIGTERM stops the schedule cleanly."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from cookiematch.dmp.events import EventLog, EventType, ImpressionEvent
from cookiematch.storage import connect_store

from conftest import free_port, running_server
from support.configs import ADMIN_TOKEN, dmp_config, serve_argv

TOKEN = ADMIN_TOKEN
SEEN = 7


def write_config(directory: Path, port: int) -> Path:
    body = """recompute_interval_minutes = 30

[[dmp.segments]]
id = "seen"
rule = { exposed = "imp", campaign = "spring" }
"""
    return dmp_config(directory, port, body=body)


async def store_impressions(url: str) -> None:
    """What ``/imp`` stores, written before the server starts: no incremental update ran."""
    store = await connect_store(url)
    try:
        events = EventLog(store, max_per_profile=10, ttl_seconds=86400)
        for i in range(SEEN):
            await events.record(f"b{i:03d}", ImpressionEvent(EventType.IMP, "spring"), time.time())
    finally:
        await store.close()


def listing(http: httpx.Client) -> dict[str, Any]:
    answer = http.get("/admin/v1/segments", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_the_server_recomputes_on_its_own_in_one_worker(tmp_path: Path) -> None:
    asyncio.run(store_impressions(f"sqlite:///{tmp_path / 'dmp.db'}"))
    port = free_port()
    config = write_config(tmp_path, port)
    argv = serve_argv(config, "dmp", "--workers", "2")
    with running_server(argv, port=port) as server, httpx.Client(base_url=server.url) as http:
        deadline = time.monotonic() + 20
        body = listing(http)
        while body["last_recompute"] is None or body["recompute_schedule"]["holder"]:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)
            body = listing(http)
        report, schedule = body["last_recompute"], body["recompute_schedule"]
        assert body["segments"] == [{"id": "seen", "description": "", "size": SEEN}]
        assert (report["profiles"], report["joined"]) == (SEEN, SEEN)
        assert schedule["interval_seconds"] == 1800
        assert schedule["next_at"] == report["at"] + 1800
        assert server.terminate() == 0
    output = server.output()
    assert output.count("scheduled segment recompute: profiles=") == 1, output
    assert "Traceback" not in output and "failed" not in output, output
