"""``cookiematch dmp ingest`` end to end (click's runner, a real SQLite file)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from click.testing import CliRunner

from cookiematch.cli.main import main
from cookiematch.config import load_config
from cookiematch.dmp.funnel import FunnelReport
from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.profiles import Profile
from cookiematch.protocol.privacy import NO_SIGNALS
from cookiematch.roots.dmp import DmpServer
from cookiematch.storage import open_store

NOW = int(time.time())


def write_config(directory: Path) -> Path:
    path = directory / "dmp.toml"
    path.write_text(
        f"""
[store]
url = "sqlite:///{directory / "dmp.db"}"

[dmp]
listen = "127.0.0.1:8720"

[dmp.ingest]
max_events_per_name = 2

[[dmp.traits]]
name = "age"
type = "number"
ttl_days = 30

[[dmp.partners]]
id = "crm"
sync_url = "https://crm.example/sync?r=${{CALLBACK_URL}}"
"""
    )
    return path


async def _seed(config: Path, pairs: dict[str, str]) -> None:
    store = open_store(load_config(config).store.url)
    table = MatchTable(store, 86400.0)
    for partner_uid, dmp_uid in pairs.items():
        await table.record("crm", dmp_uid, partner_uid, time.time())
    await store.close()


@contextlib.asynccontextmanager
async def dmp_worker(config: Path) -> AsyncIterator[DmpServer]:
    """A DMP server worker over the configured store, started as granian starts one."""
    server = DmpServer(load_config(config))
    await server.app.startup()
    try:
        yield server
    finally:
        await server.app.shutdown()


async def _callback_then_profiles(
    config: Path, uids: list[str]
) -> tuple[list[Profile], FunnelReport]:
    """A sync callback stored by a DMP worker over the same store; the profiles the admin
    API's look-up shows (the traits read from the analytics engine), the funnel it reports."""
    async with dmp_worker(config) as worker:
        assert worker.service is not None
        quiet = worker.service.consent(NO_SIGNALS)
        await worker.service.callback("crm", "d-late", "C-late", consent=quiet)
        profiles = [await worker.service.profiles.get(uid) for uid in uids]
        return profiles, await worker.service.funnel_report()


def records(*items: dict[str, object]) -> bytes:
    return b"".join(msgspec.json.encode(item) + b"\n" for item in items)


def test_ingest_files_rejects_pending_and_idempotent_rerun(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    asyncio.run(_seed(config, {"C-1": "d-1", "C-2": "d-2"}))
    data = tmp_path / "in"
    data.mkdir()
    (data / "a.jsonl.gz").write_bytes(
        gzip.compress(
            records(
                {"uid": "C-1", "attributes": {"age": 31, "tier": "gold"}},
                {"uid": "C-1", "events": [{"name": "buy", "ts": NOW - t} for t in (1, 2, 3)]},
                {"uid": "C-late", "attributes": {"tier": "silver"}},
            )
            + b"{broken\n"
        )
    )
    (data / "b.csv").write_text(f"uid,age,event,ts,remove\nC-2,40,buy,{NOW - 9},\nC-2,old,,,\n")
    rejects = tmp_path / "rejects.jsonl"
    argv = ["dmp", "ingest", "--config", str(config), "--partner", "crm"]
    argv += ["--rejects", str(rejects), str(data)]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    assert "6 records" in result.output
    assert "3 accepted" in result.output and "1 pending" in result.output
    assert "2 rejected" in result.output
    refused = [msgspec.json.decode(x) for x in rejects.read_text().splitlines()]
    assert [(Path(r["source"]).name, r["line"]) for r in refused] == [
        ("a.jsonl.gz", 4),
        ("b.csv", 3),
    ]
    assert refused[0]["raw"] == "{broken" and "not JSON" in refused[0]["reason"]
    assert "age: expected a number" in refused[1]["reason"]

    again = CliRunner().invoke(main, argv)
    assert again.exit_code == 0, again.output
    assert "3 accepted" in again.output and "1 pending" in again.output

    (one, two, late), funnel = asyncio.run(
        _callback_then_profiles(config, ["d-1", "d-2", "d-late"])
    )
    # each CLI run counted into the funnel under a key of its own; the worker, the resolve
    assert funnel.ingestion["crm"].counts == {
        "records": 12, "accepted": 6, "pending": 2, "resolved": 1, "rejected": 4, "expired": 0,
        "values": 7,
    }  # fmt: skip
    assert funnel.ingestion["crm"].rejected_by_reason == {"attribute": 2, "not_json": 2}
    assert one.attributes == {"age": 31, "tier": "gold"}
    assert one.ingested_events == {"buy": [NOW - 1, NOW - 2]}  # the newest 2 (max_events_...)
    assert two.attributes == {"age": 40} and two.ingested_events == {"buy": [NOW - 9]}
    assert late.attributes == {"tier": "silver"}  # was pending, applied on the callback


def test_ingest_refuses_an_unknown_partner(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    data = tmp_path / "a.jsonl"
    data.write_bytes(records({"uid": "x"}))
    argv = ["dmp", "ingest", "--config", str(config), "--partner", "nope", str(data)]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code != 0 and "no partner 'nope'" in result.output
