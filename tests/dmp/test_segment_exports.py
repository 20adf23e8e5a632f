"""Segment exports on a real store and a DuckDB file: signed batches, rejected IDs offered
again, delivery reports, exports by configured ids; none without an engine. (The deltas step
by step, failed batches, full exports and files, on both engines:
analytics/test_engine_exports.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.runs import EngineRuns
from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.exports import signing
from cookiematch.dmp.exports.model import (
    Delivery,
    Destination,
    FileDestination,
    FileFormat,
    HttpDestination,
    Mode,
)
from cookiematch.dmp.exports.sinks import HttpSink
from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.segment_exports import SegmentExports
from cookiematch.dmp.segments import Segment, parse_rule
from cookiematch.dmp.segments.membership import Memberships
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.dmp.traits.staging import TraitStaging
from cookiematch.dmp.traits.writes import ProfileUpdate, TraitStore
from cookiematch.errors import ConfigError, NotFound
from cookiematch.storage import Store

from .helpers import FakeClock
from .scripted_transport import ScriptedTransport, Sleeps

SECRET = b"s" * 32
SEGMENT = Segment("seg", parse_rule({"attribute": "tier", "value": "gold"}))
TTL = 390 * 86_400.0


def _destination(batch_size: int = 2, partner: str | None = "dsp") -> HttpDestination:
    delivery = Delivery(batch_size=batch_size, max_attempts=2, backoff_seconds=0)
    return HttpDestination("dest", "http://dest.example/in", SECRET, partner, delivery)


@pytest.fixture
def runs(store: Store, clock: FakeClock, tmp_path: Path) -> EngineRuns:
    settings = AnalyticsSettings(str(tmp_path / "dmp.duckdb"))
    return EngineRuns(
        lambda: DuckDBEngine(settings), store, Memberships(store, TTL), TraitCatalog(),
        holder="test", clock=clock, staging=TraitStaging(settings.staging_directory),
    )  # fmt: skip


def _exports(
    store: Store, clock: FakeClock, runs: EngineRuns, *dests: Destination
) -> SegmentExports:
    return SegmentExports(store, [SEGMENT.id], dests, clock=clock, engine=runs)


async def _setup(
    store: Store, clock: FakeClock, runs: EngineRuns, members: int = 5, matched: int = 4
) -> None:
    """``members`` browsers in the segment (their traits staged for the engine, recomputed),
    the first ``matched`` synced with the partner ``dsp``."""
    updates = {}
    for i in range(members):
        updates[f"u{i}"] = update = ProfileUpdate("crm")
        update.merge({"tier": "gold"}, (), ())
    await TraitStore(store, TraitCatalog(), clock=clock, staging=runs.staging).apply(updates)
    matches = MatchTable(store, TTL)
    for i in range(matched):
        await matches.record("dsp", f"u{i}", f"D{i}", clock())
    clock.now += 60
    await runs.recompute([SEGMENT])


async def test_batches_are_signed_and_keyed_by_their_id(
    store: Store, clock: FakeClock, runs: EngineRuns
) -> None:
    await _setup(store, clock, runs)
    transport = ScriptedTransport()
    sink = HttpSink(_destination(), transport, clock=clock, sleep=Sleeps())
    report = await _exports(store, clock, runs).deliver(SEGMENT.id, _destination(), sink)
    assert (report.members, report.sent, report.accepted, report.unmatched) == (5, 4, 4, 1)
    assert report.batches == 2 and report.failed == 0
    sent = sorted(i for b in transport.bodies() for i in b["add"])  # type: ignore[attr-defined]
    assert sent == ["D0", "D1", "D2", "D3"]
    for _, body, headers in transport.requests:
        assert signing.verify(SECRET, headers, body, clock())
        assert headers["Idempotency-Key"] == json.loads(body)["batch_id"]


async def test_rejected_ids_are_reported_and_offered_again(
    store: Store, clock: FakeClock, runs: EngineRuns
) -> None:
    await _setup(store, clock, runs, members=3, matched=3)
    exports = _exports(store, clock, runs)
    transport = ScriptedTransport((200, {"rejected": ["D1", {"id": "D2", "reason": "unknown"}]}))
    sink = HttpSink(_destination(batch_size=10), transport, clock=clock, sleep=Sleeps())
    report = await exports.deliver(SEGMENT.id, _destination(batch_size=10), sink)
    assert (report.sent, report.accepted, report.rejected) == (3, 1, 2)
    again = await exports.deliver(SEGMENT.id, _destination(batch_size=10), sink)
    assert again.sent == 2


async def test_exports_by_configured_ids_and_their_last_reports(
    store: Store, clock: FakeClock, runs: EngineRuns, tmp_path: Path
) -> None:
    await _setup(store, clock, runs, members=3, matched=2)
    files = FileDestination("files", f"{tmp_path}/{{segment}}.csv", FileFormat.CSV, "dsp")
    transport = ScriptedTransport()
    exports = _exports(store, clock, runs, _destination(batch_size=10), files)
    assert await exports.last_reports(SEGMENT.id) == {}

    to_dest = await exports.export(SEGMENT.id, "dest", transport)
    to_files = await exports.export(SEGMENT.id, "files", transport, Mode.FULL)
    assert (to_dest.accepted, to_dest.unmatched, len(transport.requests)) == (2, 1, 1)
    assert (to_files.mode, to_files.accepted) == ("full", 2)
    assert sorted((tmp_path / "seg.csv").read_text().splitlines()[1:]) == ["add,D0", "add,D1"]
    assert await exports.last_reports(SEGMENT.id) == {"dest": to_dest, "files": to_files}
    assert await exports.last_reports("other") == {}

    with pytest.raises(NotFound, match="no segment 'other'"):
        await exports.export("other", "dest", transport)
    with pytest.raises(NotFound, match="no destination 'nowhere'"):
        await exports.export(SEGMENT.id, "nowhere", transport)
    assert len(transport.requests) == 1


async def test_without_an_engine_there_is_no_export(store: Store, clock: FakeClock) -> None:
    exports = SegmentExports(store, [SEGMENT.id], [_destination()], clock=clock)
    with pytest.raises(ConfigError, match=r"analytics engine.*DuckDB.*needs no server"):
        await exports.export(SEGMENT.id, "dest", ScriptedTransport())
