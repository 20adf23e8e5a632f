"""One ``[dmp.ingest] max_events_per_name`` for every reader of a profile: the admin
profile, the ingestion CLI and segment rules see the same events."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import msgspec
from click.testing import CliRunner

from cookiematch.cli.main import main
from cookiematch.config import load_config
from cookiematch.dmp.matches import MatchTable
from cookiematch.storage import open_store

from .test_ingest_cli import dmp_worker

NOW = int(time.time())
VISITS = 120
TOKEN = "event-cap-admin-token-01"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def write_config(directory: Path) -> Path:
    path = directory / "dmp.toml"
    path.write_text(
        f"""
[store]
url = "sqlite:///{directory / "dmp.db"}"

[dmp]
listen = "127.0.0.1:8720"
admin_token = "{TOKEN}"

[dmp.ingest]
max_events_per_name = 200
event_ttl_days = 30

[[dmp.partners]]
id = "crm"
sync_url = "https://crm.example/sync?r=${{CALLBACK_URL}}"

[[dmp.segments]]
id = "frequent"
rule = {{ event = "visit", at_least = 60 }}
"""
    )
    return path


async def _seed(config: Path) -> None:
    store = open_store(load_config(config).store.url)
    await MatchTable(store, 86400.0).record("crm", "d-1", "C-1", time.time())
    await store.close()


async def _admin_profile_events(config: Path) -> int:
    """The visits the DMP's admin API shows for the profile."""
    async with dmp_worker(config) as worker:
        assert worker.app.fallback is not None
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=worker.app.fallback), base_url="http://dmp"
        ) as client:
            answer = await client.get("/admin/v1/profiles/d-1", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return len(answer.json()["ingested_events"]["visit"])


def test_segment_rules_see_the_configured_event_cap(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    asyncio.run(_seed(config))
    data = tmp_path / "visits.jsonl"
    events = [{"name": "visit", "ts": NOW - 60 * i} for i in range(VISITS)]
    data.write_bytes(msgspec.json.encode({"uid": "C-1", "events": events}) + b"\n")
    runner = CliRunner()
    ingested = runner.invoke(
        main, ["dmp", "ingest", "--config", str(config), "--partner", "crm", str(data)]
    )
    assert ingested.exit_code == 0, ingested.output
    assert asyncio.run(_admin_profile_events(config)) == VISITS  # the admin profile's view

    recomputed = runner.invoke(main, ["dmp", "segments", "recompute", "--config", str(config)])
    assert recomputed.exit_code == 0, recomputed.output
    sizes = dict(line.split() for line in recomputed.output.splitlines() if line.startswith(" "))
    assert sizes == {"frequent": "1"}  # 120 visits >= 60: the rule sees all of them
