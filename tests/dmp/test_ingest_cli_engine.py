"""``cookiematch dmp ingest`` with ``[dmp.analytics] ingest = "engine"``: the files validated
and merged in SQL into the engine's profiles (a real DuckDB file), the pending records and
the funnel's counts in the store (a real SQLite file), the same outcomes as per record."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import duckdb
import msgspec
from click.testing import CliRunner

from cookiematch.cli.main import main
from cookiematch.dmp.analytics.tables import ATTRIBUTES, EVENTS

from .test_ingest_cli import NOW, _callback_then_snapshots, _seed, records, write_config


def engine_config(directory: Path) -> tuple[Path, Path]:
    config = write_config(directory)
    engine = directory / "engine.duckdb"
    config.write_text(
        config.read_text() + f'\n[dmp.analytics]\npath = "{engine}"\ningest = "engine"\n'
    )
    return config, engine


def test_ingest_on_the_engine_rejects_parks_and_counts_as_per_record(tmp_path: Path) -> None:
    config, engine = engine_config(tmp_path)
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

    with duckdb.connect(str(engine), read_only=True) as db:
        attributes = db.execute(
            f"SELECT profile, name, text, num_int FROM {ATTRIBUTES} ORDER BY ALL"
        ).fetchall()
        events = db.execute(f"SELECT profile, name, ts FROM {EVENTS} ORDER BY ALL").fetchall()
    assert attributes == [
        ("d-1", "age", None, "31"),  # BIGNUM, read back as text
        ("d-1", "tier", "gold", None),
        ("d-2", "age", None, "40"),
    ]
    # the newest 2 (max_events_per_name), the same after the second run
    assert events == [("d-1", "buy", NOW - 2), ("d-1", "buy", NOW - 1), ("d-2", "buy", NOW - 9)]

    (_, _, late), funnel = asyncio.run(_callback_then_snapshots(config, ["d-1", "d-2", "d-late"]))
    assert funnel.ingestion["crm"].counts == {
        "records": 12, "accepted": 6, "pending": 2, "resolved": 1, "rejected": 4, "expired": 0,
        "values": 7,
    }  # fmt: skip
    assert funnel.ingestion["crm"].rejected_by_reason == {"attribute": 2, "not_json": 2}
    assert late.attributes == {"tier": "silver"}  # was pending, applied on the callback
