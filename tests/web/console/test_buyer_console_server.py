"""The buyer's console through a real ``cookiematch serve`` process: the admin token logs in,
the page and its series answer; no other token does. The match table's size and stale share,
counted at startup over a table filled beforehand, at ``/metrics`` and on the page."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from cookiematch.buyer.matchtable import MatchTable
from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.storage import connect_store

from conftest import ServerProcess, free_port
from support.configs import ADMIN_TOKEN, buyer_config, serve_argv
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
        assert "name=buyer_auction" in page.text and "ratio=won%2Cbid" in page.text
        series = http.get("/console/api/series?name=buyer_lookup&minutes=5&share=matched")
        assert series.status_code == 200 and series.json()["counter"] is False
        assert http.get("/console/exchange").status_code == 404


async def _fill(database: Path) -> None:
    """Three pairings in the buyer's table (SQLite: the ``keys`` layout), one of them matched
    20 days ago: stale after the default 14."""
    store = await connect_store(f"sqlite:///{database}")
    try:
        for n, age_days in enumerate((0, 1, 20)):
            matched_at = time.time() - age_days * DAY
            table = await MatchTable.open(
                store, "dsp", ttl_seconds=28 * DAY, clock=lambda t=matched_at: t, layout="keys"
            )
            await table.record(f"Z2lkLTA{n}", bytes([n]) * 16, 1)
    finally:
        await store.close()


def test_the_match_table_size_and_stale_share(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    port = free_port()
    config = buyer_config(tmp_path, port)
    config.write_text(config.read_text() + "\n[console]\nsample_seconds = 1\n")
    asyncio.run(_fill(tmp_path / "buyer.db"))
    start_server(argv=serve_argv(config, "buyer"), port=port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        metrics = http.get("/metrics", headers=auth).text
        while "cookiematch_buyer_match_table_measured_timestamp_seconds " not in metrics:
            metrics = http.get("/metrics", headers=auth).text  # the count runs at startup
        assert 'cookiematch_buyer_match_table_entries{age="fresh"} 2.0' in metrics
        assert 'cookiematch_buyer_match_table_entries{age="stale"} 1.0' in metrics
        log_in(http)
        page = http.get("/console/buyer").text
        assert "<td>3</td><td>1</td><td>33.3%</td>" in page
        assert "name=buyer_table" in page and "share=stale" in page
        query = "/console/api/series?name=buyer_table&minutes=5&share=stale"
        lines: dict[str, list[float | None]] = {}
        while not any(v is not None for values in lines.values() for v in values):
            lines = http.get(query).json()["lines"]  # a point is recorded every second
        assert [v for values in lines.values() for v in values if v is not None][-1] == 1 / 3
