"""Exports: signatures, retries, incremental and full plans, delivery reports, files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import msgspec
import pytest

from cookiematch.dmp.exports import (
    Delivery,
    Exporter,
    FileDestination,
    FileFormat,
    FileSink,
    HttpDestination,
    HttpSink,
    Mode,
    signing,
)
from cookiematch.dmp.exports.retry import post_with_retry
from cookiematch.dmp.exports.transport import HttpAnswer
from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.segments.membership import Change, Memberships
from cookiematch.storage import Store

from .helpers import NOW

SECRET = b"s" * 32


class ScriptedTransport:
    """Answers from a script (status, body) or raises; records every request."""

    def __init__(self, *script: tuple[int, object] | type[Exception]) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpAnswer:
        self.requests.append((url, body, dict(headers)))
        step = self.script.pop(0) if self.script else (200, {})
        if isinstance(step, type):
            raise step("scripted")
        status, data = step
        return HttpAnswer(status, json.dumps(data).encode(), {})

    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(body) for _, body, _ in self.requests]


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_signatures_verify_and_refuse_tampering_and_replays() -> None:
    body = b'{"add":["a"]}'
    headers = signing.sign(SECRET, body, NOW)
    assert headers[signing.SIGNATURE_HEADER].startswith("v1=")
    assert signing.verify(SECRET, headers, body, NOW + 10)
    assert not signing.verify(SECRET, headers, body + b" ", NOW)
    assert not signing.verify(b"x" * 32, headers, body, NOW)
    assert not signing.verify(SECRET, headers, body, NOW + 301)
    lowered = {k.lower(): v for k, v in headers.items()}
    assert signing.verify(SECRET, lowered, body, NOW)


async def test_retries_back_off_exponentially_until_a_final_answer() -> None:
    transport = ScriptedTransport((503, {}), TimeoutError, (500, {}), (200, {}))
    sleeps = Sleeps()
    delivery = Delivery(max_attempts=5, backoff_seconds=0.5)
    attempts = await post_with_retry(
        transport, "http://d/", b"{}", lambda: {}, delivery, sleep=sleeps, rand=lambda: 1.0
    )
    assert attempts.attempts == 4 and attempts.answer is not None
    assert attempts.answer.status == 200
    assert sleeps.waits == [0.5, 1.0, 2.0]


async def test_a_client_error_is_final_and_exhaustion_is_reported() -> None:
    sleeps = Sleeps()
    final = await post_with_retry(
        ScriptedTransport((400, {})), "http://d/", b"{}", lambda: {}, Delivery(), sleep=sleeps
    )
    assert final.attempts == 1 and final.error is None
    exhausted = await post_with_retry(
        ScriptedTransport(*[ConnectionError] * 3), "http://d/", b"{}", lambda: {},
        Delivery(max_attempts=3), sleep=sleeps,
    )  # fmt: skip
    assert exhausted.attempts == 3 and exhausted.answer is None and exhausted.error


def _destination(batch_size: int = 2, partner: str | None = "dsp") -> HttpDestination:
    delivery = Delivery(batch_size=batch_size, max_attempts=2, backoff_seconds=0)
    return HttpDestination("dest", "http://dest.example/in", SECRET, partner, delivery)


async def _setup(store: Store, members: int = 5, matched: int = 4) -> MatchTable:
    matches = MatchTable(store, 86400)
    await Memberships(store).apply([Change(f"u{i}", {"seg": NOW}) for i in range(members)])
    for i in range(matched):
        await matches.record("dsp", f"u{i}", f"D{i}", NOW)
    return matches


async def test_incremental_export_sends_adds_then_removes(store: Store) -> None:
    matches = await _setup(store)
    exporter = Exporter(store, matches, clock=lambda: NOW)
    transport = ScriptedTransport()
    sink = HttpSink(_destination(), transport, clock=lambda: NOW, sleep=Sleeps())

    report = await exporter.export("seg", _destination(), sink)
    assert (report.members, report.sent, report.accepted, report.unmatched) == (5, 4, 4, 1)
    assert report.batches == 2 and report.failed == 0
    sent = sorted(i for b in transport.bodies() for i in b["add"])  # type: ignore[attr-defined]
    assert sent == ["D0", "D1", "D2", "D3"]
    for _, body, headers in transport.requests:
        assert signing.verify(SECRET, headers, body, NOW)
        assert headers["Idempotency-Key"] == json.loads(body)["batch_id"]

    transport.requests.clear()
    again = await exporter.export("seg", _destination(), sink)
    assert (again.sent, again.unchanged, transport.requests) == (0, 4, [])

    await Memberships(store).apply([Change("u1", left=("seg",)), Change("u4", {"seg": NOW})])
    await matches.record("dsp", "u4", "D4", NOW)
    delta = await exporter.export("seg", _destination(batch_size=10), sink)
    assert (delta.added, delta.removed, delta.batches) == (1, 1, 1)
    assert transport.bodies()[0]["add"] == ["D4"] and transport.bodies()[0]["remove"] == ["D1"]


async def test_a_failed_batch_changes_nothing_and_is_sent_again(store: Store) -> None:
    matches = await _setup(store, members=2, matched=2)
    exporter = Exporter(store, matches, clock=lambda: NOW)
    transport = ScriptedTransport((503, {}), (503, {}))
    sink = HttpSink(_destination(), transport, clock=lambda: NOW, sleep=Sleeps())
    report = await exporter.export("seg", _destination(), sink)
    assert (report.failed, report.accepted, report.retries) == (2, 0, 1)
    assert not report.ok and "HTTP 503" in report.errors[0]
    retry = await exporter.export("seg", _destination(), sink)
    assert retry.accepted == 2
    ids = {json.loads(body)["batch_id"] for _, body, _ in transport.requests}
    assert len(ids) == 1  # the same content, the same batch id: the receiver can deduplicate


async def test_rejected_ids_are_reported_and_offered_again(store: Store) -> None:
    matches = await _setup(store, members=3, matched=3)
    exporter = Exporter(store, matches, clock=lambda: NOW)
    transport = ScriptedTransport((200, {"rejected": ["D1", {"id": "D2", "reason": "unknown"}]}))
    sink = HttpSink(_destination(batch_size=10), transport, clock=lambda: NOW, sleep=Sleeps())
    report = await exporter.export("seg", _destination(batch_size=10), sink)
    assert (report.sent, report.accepted, report.rejected) == (3, 1, 2)
    again = await exporter.export("seg", _destination(batch_size=10), sink)
    assert again.sent == 2


async def test_full_export_resends_and_follows_a_changed_partner_id(store: Store) -> None:
    matches = await _setup(store, members=2, matched=2)
    exporter = Exporter(store, matches, clock=lambda: NOW)
    transport = ScriptedTransport()
    dest = _destination(batch_size=10)
    sink = HttpSink(dest, transport, clock=lambda: NOW, sleep=Sleeps())
    await exporter.export("seg", dest, sink)
    await matches.record("dsp", "u0", "D0-new", NOW)
    incremental = await exporter.export("seg", dest, sink)
    assert incremental.sent == 0  # incremental trusts what it sent
    full = await exporter.export("seg", dest, sink, Mode.FULL)
    body = transport.bodies()[-1]
    assert body["mode"] == "full"
    assert sorted(body["add"]) == ["D0-new", "D1"] and body["remove"] == ["D0"]  # type: ignore[arg-type]
    assert (full.added, full.removed) == (2, 1)


@pytest.mark.parametrize("fmt", list(FileFormat))
async def test_file_destinations(store: Store, tmp_path: Path, fmt: FileFormat) -> None:
    matches = await _setup(store, members=3, matched=3)
    path = str(tmp_path / "out" / "{segment}-{destination}.{mode}")
    dest = FileDestination("files", path, fmt, None, Delivery(batch_size=2))
    report = await Exporter(store, matches).export("seg", dest, FileSink(dest))
    assert report.accepted == 3 and report.unmatched == 0
    written = (tmp_path / "out" / "seg-files.incremental").read_text()
    if fmt is FileFormat.CSV:
        assert written.splitlines()[0] == "action,id"
        assert sorted(written.splitlines()[1:]) == ["add,u0", "add,u1", "add,u2"]
    else:
        rows = [msgspec.json.decode(line) for line in written.splitlines()]
        assert sorted(r["id"] for r in rows) == ["u0", "u1", "u2"]
    assert not list((tmp_path / "out").glob("*.partial"))
