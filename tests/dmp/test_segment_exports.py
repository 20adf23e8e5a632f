"""Segment exports on a real store: incremental and full plans, failed and rejected batches,
delivery reports, files; exports by configured ids."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.dmp.exports import signing
from cookiematch.dmp.exports.model import (
    Delivery,
    Destination,
    FileDestination,
    FileFormat,
    HttpDestination,
    Mode,
)
from cookiematch.dmp.exports.sinks import FileSink, HttpSink
from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.segment_exports import SegmentExports
from cookiematch.dmp.segments.membership import Change, Memberships
from cookiematch.errors import NotFound
from cookiematch.storage import Store

from .helpers import NOW
from .scripted_transport import ScriptedTransport, Sleeps

SECRET = b"s" * 32


def _destination(batch_size: int = 2, partner: str | None = "dsp") -> HttpDestination:
    delivery = Delivery(batch_size=batch_size, max_attempts=2, backoff_seconds=0)
    return HttpDestination("dest", "http://dest.example/in", SECRET, partner, delivery)


def _exports(
    store: Store, matches: MatchTable, *destinations: Destination, segment: str = "seg"
) -> SegmentExports:
    return SegmentExports(store, [segment], destinations, matches, clock=lambda: NOW)


async def _setup(store: Store, members: int = 5, matched: int = 4) -> MatchTable:
    matches = MatchTable(store, SECONDS_PER_DAY)
    await Memberships(store).apply([Change(f"u{i}", {"seg": NOW}) for i in range(members)])
    for i in range(matched):
        await matches.record("dsp", f"u{i}", f"D{i}", NOW)
    return matches


async def test_incremental_export_sends_adds_then_removes(store: Store) -> None:
    matches = await _setup(store)
    exports = _exports(store, matches)
    transport = ScriptedTransport()
    sink = HttpSink(_destination(), transport, clock=lambda: NOW, sleep=Sleeps())

    report = await exports.deliver("seg", _destination(), sink)
    assert (report.members, report.sent, report.accepted, report.unmatched) == (5, 4, 4, 1)
    assert report.batches == 2 and report.failed == 0
    sent = sorted(i for b in transport.bodies() for i in b["add"])  # type: ignore[attr-defined]
    assert sent == ["D0", "D1", "D2", "D3"]
    for _, body, headers in transport.requests:
        assert signing.verify(SECRET, headers, body, NOW)
        assert headers["Idempotency-Key"] == json.loads(body)["batch_id"]

    transport.requests.clear()
    again = await exports.deliver("seg", _destination(), sink)
    assert (again.sent, again.unchanged, transport.requests) == (0, 4, [])

    await Memberships(store).apply([Change("u1", left=("seg",)), Change("u4", {"seg": NOW})])
    await matches.record("dsp", "u4", "D4", NOW)
    delta = await exports.deliver("seg", _destination(batch_size=10), sink)
    assert (delta.added, delta.removed, delta.batches) == (1, 1, 1)
    assert transport.bodies()[0]["add"] == ["D4"] and transport.bodies()[0]["remove"] == ["D1"]


async def test_a_failed_batch_changes_nothing_and_is_sent_again(store: Store) -> None:
    matches = await _setup(store, members=2, matched=2)
    exports = _exports(store, matches)
    transport = ScriptedTransport((503, {}), (503, {}))
    sink = HttpSink(_destination(), transport, clock=lambda: NOW, sleep=Sleeps())
    report = await exports.deliver("seg", _destination(), sink)
    assert (report.failed, report.accepted, report.retries) == (2, 0, 1)
    assert not report.ok and "HTTP 503" in report.errors[0]
    retry = await exports.deliver("seg", _destination(), sink)
    assert retry.accepted == 2
    ids = {json.loads(body)["batch_id"] for _, body, _ in transport.requests}
    assert len(ids) == 1  # the same content, the same batch id: the receiver can deduplicate


async def test_rejected_ids_are_reported_and_offered_again(store: Store) -> None:
    matches = await _setup(store, members=3, matched=3)
    exports = _exports(store, matches)
    transport = ScriptedTransport((200, {"rejected": ["D1", {"id": "D2", "reason": "unknown"}]}))
    sink = HttpSink(_destination(batch_size=10), transport, clock=lambda: NOW, sleep=Sleeps())
    report = await exports.deliver("seg", _destination(batch_size=10), sink)
    assert (report.sent, report.accepted, report.rejected) == (3, 1, 2)
    again = await exports.deliver("seg", _destination(batch_size=10), sink)
    assert again.sent == 2


async def test_full_export_resends_and_follows_a_changed_partner_id(store: Store) -> None:
    matches = await _setup(store, members=2, matched=2)
    exports = _exports(store, matches)
    transport = ScriptedTransport()
    dest = _destination(batch_size=10)
    sink = HttpSink(dest, transport, clock=lambda: NOW, sleep=Sleeps())
    await exports.deliver("seg", dest, sink)
    await matches.record("dsp", "u0", "D0-new", NOW)
    incremental = await exports.deliver("seg", dest, sink)
    assert incremental.sent == 0  # incremental trusts what it sent
    full = await exports.deliver("seg", dest, sink, Mode.FULL)
    body = transport.bodies()[-1]
    assert body["mode"] == "full"
    assert sorted(body["add"]) == ["D0-new", "D1"] and body["remove"] == ["D0"]  # type: ignore[arg-type]
    assert (full.added, full.removed) == (2, 1)


@pytest.mark.parametrize("fmt", list(FileFormat))
async def test_file_destinations(store: Store, tmp_path: Path, fmt: FileFormat) -> None:
    matches = await _setup(store, members=3, matched=3)
    path = str(tmp_path / "out" / "{segment}-{destination}.{mode}")
    dest = FileDestination("files", path, fmt, None, Delivery(batch_size=2))
    report = await _exports(store, matches, dest).deliver("seg", dest, FileSink(dest))
    assert report.accepted == 3 and report.unmatched == 0
    written = (tmp_path / "out" / "seg-files.incremental").read_text()
    if fmt is FileFormat.CSV:
        assert written.splitlines()[0] == "action,id"
        assert sorted(written.splitlines()[1:]) == ["add,u0", "add,u1", "add,u2"]
    else:
        rows = [msgspec.json.decode(line) for line in written.splitlines()]
        assert sorted(r["id"] for r in rows) == ["u0", "u1", "u2"]
    assert not list((tmp_path / "out").glob("*.partial"))


async def test_exports_by_configured_ids_and_their_last_reports(
    store: Store, tmp_path: Path
) -> None:
    matches = await _setup(store, members=3, matched=2)
    files = FileDestination("files", f"{tmp_path}/{{segment}}.csv", FileFormat.CSV, "dsp")
    transport = ScriptedTransport()
    exports = _exports(store, matches, _destination(batch_size=10), files)
    assert await exports.last_reports("seg") == {}

    to_dest = await exports.export("seg", "dest", transport)
    to_files = await exports.export("seg", "files", transport, Mode.FULL)
    assert (to_dest.accepted, to_dest.unmatched, len(transport.requests)) == (2, 1, 1)
    assert (to_files.mode, to_files.accepted) == ("full", 2)
    assert sorted((tmp_path / "seg.csv").read_text().splitlines()[1:]) == ["add,D0", "add,D1"]
    assert await exports.last_reports("seg") == {"dest": to_dest, "files": to_files}
    assert await exports.last_reports("other") == {}

    with pytest.raises(NotFound, match="no segment 'other'"):
        await exports.export("other", "dest", transport)
    with pytest.raises(NotFound, match="no destination 'nowhere'"):
        await exports.export("seg", "nowhere", transport)
    assert len(transport.requests) == 1
