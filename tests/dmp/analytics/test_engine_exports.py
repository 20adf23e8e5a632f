"""Segment exports reading their deltas from the analytics engine, on DuckDB and on Spark (local
mode, for real), over a real SQLite store: profiles written by the DMP's own writers, segments
recomputed on the engine, batches sent through the real HTTP sink to a scripted receiver, files
written by the engine itself: the deltas step by step, the files line by line, and both
engines find the same deltas."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from pyspark.sql import SparkSession

from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.engine import AnalyticsEngine
from cookiematch.dmp.analytics.export_sql import Delivered, ExportRow, ExportTarget
from cookiematch.dmp.analytics.rows import ConsentRow, MembershipRow, ProfileRows, SyncRow
from cookiematch.dmp.analytics.runs import EngineRuns
from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.analytics.spark_engine import SparkEngine
from cookiematch.dmp.consent import CONSENT_MAX_AGE, HOST, vendor_party
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
from cookiematch.storage import Store

from ..helpers import FakeClock
from ..scripted_transport import ScriptedTransport, Sleeps
from .conftest import SPARK_START_TIMEOUT

pytestmark = pytest.mark.timeout(SPARK_START_TIMEOUT)

SECRET = b"s" * 32
SEGMENT = Segment("gold", parse_rule({"attribute": "tier", "value": "gold"}))
TTL = 390 * 86_400.0


def _http(dest_id: str = "dest", batch_size: int = 2) -> HttpDestination:
    delivery = Delivery(batch_size=batch_size, max_attempts=2, backoff_seconds=0)
    return HttpDestination(dest_id, "http://dest.example/in", SECRET, "dsp", delivery)


class World:
    """A store, its writers, the engine's jobs over it, and exports reading it."""

    def __init__(self, store: Store, clock: FakeClock, runs: EngineRuns) -> None:
        self.store, self.clock, self.runs = store, clock, runs
        # the engine owns the traits: online writes are staged for it
        self.traits = TraitStore(store, TraitCatalog(), clock=clock, staging=runs.staging)
        self.matches = MatchTable(store, TTL)

    def exports(self, *destinations: Destination) -> SegmentExports:
        return SegmentExports(
            self.store, [SEGMENT.id], destinations, clock=self.clock, engine=self.runs
        )

    async def tiers(self, **tier_of: str) -> None:
        updates = {}
        for uid, tier in tier_of.items():
            update = ProfileUpdate("crm")
            update.merge({"tier": tier}, (), ())
            updates[uid] = update
        await self.traits.apply(updates)

    async def match(self, **partner_uid_of: str) -> None:
        for uid, partner_uid in partner_uid_of.items():
            await self.matches.record("dsp", uid, partner_uid, self.clock())

    async def recompute(self) -> None:
        self.clock.now += 60
        await self.runs.recompute([SEGMENT])


@pytest.fixture(params=["duckdb", "spark"])
def runs(
    request: pytest.FixtureRequest, store: Store, clock: FakeClock, tmp_path: Path
) -> EngineRuns:
    if request.param == "spark":
        session: SparkSession = request.getfixturevalue("spark")
        settings = AnalyticsSettings(str(tmp_path / "tables"), engine="spark")

        def open_engine() -> AnalyticsEngine:
            return SparkEngine(settings, session=session)
    else:
        settings = AnalyticsSettings(str(tmp_path / "dmp.duckdb"))

        def open_engine() -> AnalyticsEngine:
            return DuckDBEngine(settings)

    return EngineRuns(
        open_engine, store, Memberships(store, TTL), TraitCatalog(), holder="test", clock=clock,
        staging=TraitStaging(settings.staging_directory),
    )  # fmt: skip


@pytest.fixture
def world(store: Store, clock: FakeClock, runs: EngineRuns) -> World:
    return World(store, clock, runs)


def _sent(transport: ScriptedTransport) -> tuple[list[str], list[str]]:
    bodies = transport.bodies()
    transport.requests.clear()
    adds = sorted(i for b in bodies for i in b["add"])  # type: ignore[attr-defined]
    removes = sorted(i for b in bodies for i in b["remove"])  # type: ignore[attr-defined]
    return adds, removes


async def test_first_sends_all_then_nothing_then_the_changes(world: World) -> None:
    await world.tiers(u0="gold", u1="gold", u2="gold", u3="gold", u4="gold", u5="silver")
    await world.match(u0="D0", u1="D1", u2="D2", u3="D3", u5="D5")
    await world.recompute()
    exports, transport = world.exports(_http()), ScriptedTransport()

    first = await exports.export(SEGMENT.id, "dest", transport)
    assert (first.members, first.added, first.unmatched, first.batches) == (5, 4, 1, 2)
    assert _sent(transport) == (["D0", "D1", "D2", "D3"], [])
    assert await exports.state(SEGMENT.id, "dest").size() == 4  # erasure reads it

    again = await exports.export(SEGMENT.id, "dest", transport)
    assert (again.sent, again.unchanged, again.batches) == (0, 4, 0)
    assert transport.requests == []

    await world.tiers(u1="silver", u5="gold")
    await world.match(u4="D4")
    await world.recompute()
    delta = await exports.export(SEGMENT.id, "dest", transport)
    assert (delta.added, delta.removed) == (2, 1)
    assert _sent(transport) == (["D4", "D5"], ["D1"])
    assert (await exports.export(SEGMENT.id, "dest", transport)).sent == 0


async def test_a_failed_delivery_is_sent_again(world: World) -> None:
    await world.tiers(u0="gold", u1="gold")
    await world.match(u0="D0", u1="D1")
    await world.recompute()
    exports = world.exports(_http())
    transport = ScriptedTransport((503, {}), (503, {}))
    sink = HttpSink(_http(), transport, clock=world.clock, sleep=Sleeps())
    failed = await exports.deliver(SEGMENT.id, _http(), sink)
    assert (failed.failed, failed.accepted, failed.retries) == (2, 0, 1)

    retry = await exports.deliver(SEGMENT.id, _http(), sink)
    assert retry.accepted == 2
    ids = {b["batch_id"] for b in transport.bodies()}
    assert len(ids) == 1  # the same content, the same batch id
    transport.requests.clear()
    assert (await exports.deliver(SEGMENT.id, _http(), sink)).sent == 0


async def test_the_deltas_step_by_step(world: World) -> None:
    """First export, partner IDs changed, members leaving and joining, a full export."""
    exports = world.exports(_http("dest", 3))
    await world.tiers(**{f"u{i}": "gold" for i in range(8)})
    await world.match(**{f"u{i}": f"D{i}" for i in range(6)})

    async def step(mode: Mode = Mode.INCREMENTAL) -> tuple[tuple[list[str], list[str]], int, int]:
        await world.recompute()
        transport = ScriptedTransport()
        report = await exports.export(SEGMENT.id, "dest", transport, mode)
        return _sent(transport), report.unmatched, report.members

    assert await step() == (([f"D{i}" for i in range(6)], []), 2, 8)
    await world.match(u0="D0-new", u6="D6")
    await world.tiers(u1="silver", u2="silver")
    assert await step() == ((["D6"], ["D1", "D2"]), 1, 6)  # incremental trusts the ID it sent
    await world.tiers(u1="gold")
    full = (["D0-new", "D1", "D3", "D4", "D5", "D6"], ["D0"])
    assert await step(Mode.FULL) == (full, 1, 7)
    assert await step() == (([], []), 1, 7)


def _csv_lines(*rows: tuple[str, str]) -> list[str]:
    """The lines Python's ``csv`` module writes for ``rows`` (the file sink's format)."""
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().splitlines(keepends=True)


@pytest.mark.parametrize("fmt", list(FileFormat))
async def test_file_destinations_are_written_by_the_engine(
    world: World, tmp_path: Path, fmt: FileFormat
) -> None:
    path = str(tmp_path / "out" / "{destination}.{mode}")
    dest = FileDestination("files", path, fmt, "dsp", Delivery(batch_size=2))
    await world.tiers(u0="gold", u1="gold", u2="gold", u3="gold")
    await world.match(u0="D0", u1="D,1", u2='D"2')  # IDs a CSV quotes

    async def files(mode: Mode = Mode.INCREMENTAL) -> list[str]:
        await world.recompute()
        report = await world.exports(dest).export(SEGMENT.id, "files", ScriptedTransport(), mode)
        assert report.failed == 0
        written = (tmp_path / "out" / f"files.{mode.value}").read_bytes().decode()
        lines = written.splitlines(keepends=True)
        if fmt is FileFormat.CSV:
            assert lines[0] == "action,id\r\n"
        return sorted(lines)

    first = await files()
    if fmt is FileFormat.CSV:
        adds = [("add", 'D"2'), ("add", "D,1"), ("add", "D0")]
        assert first == sorted(_csv_lines(("action", "id"), *adds))
    else:
        assert first == sorted(
            msgspec.json.encode({"action": "add", "id": i}).decode() + "\n"
            for i in ('D"2', "D,1", "D0")
        )
    await world.tiers(u0="silver")
    await world.match(u3="D3")
    changed = await files()
    if fmt is FileFormat.CSV:
        assert changed == sorted(_csv_lines(("action", "id"), ("add", "D3"), ("remove", "D0")))
    else:
        assert [msgspec.json.decode(line) for line in changed] == [
            {"action": "add", "id": "D3"}, {"action": "remove", "id": "D0"},
        ]  # fmt: skip
    await files(Mode.FULL)
    assert not list((tmp_path / "out").glob("*.partial"))


async def test_an_export_waits_for_a_running_engine_job(world: World) -> None:
    await world.tiers(u0="gold")
    await world.match(u0="D0")
    await world.recompute()
    exports, transport = world.exports(_http()), ScriptedTransport()
    async with world.runs.engine():
        waiting = asyncio.create_task(exports.export(SEGMENT.id, "dest", transport))
        await asyncio.sleep(0.6)
        assert not waiting.done()  # the lease is held: it waits
    assert (await waiting).added == 1


# --- the engines side by side ---------------------------------------------------------------

NOW = 1_700_000_000.0
VENDOR = vendor_party(11)


def _profiles() -> list[ProfileRows]:
    """Members of ``seg`` with and without a partner ID, with each kind of consent."""

    def consent(*parties: str, refused: bool = False, old: bool = False) -> dict[str, ConsentRow]:
        updated = NOW - (CONSENT_MAX_AGE + 1 if old else 3600)
        return {p: ConsentRow(NOW - 10, updated, refused) for p in parties}

    marks = [
        {},  # never seen under GDPR
        consent(HOST, VENDOR),
        consent(HOST),  # the vendor has no mark
        consent(HOST, VENDOR, refused=True),
        consent(HOST, VENDOR, old=True),
    ]
    found = []
    for i in range(40):
        syncs = {"dsp": SyncRow(f"D{i}", NOW)} if i % 7 else {}
        if i % 11 == 0:
            syncs["dsp"] = SyncRow(f"lapsed{i}", NOW, expires_at=NOW - 1)
        segments = {"seg": MembershipRow(NOW, NOW)} if i % 3 else {}
        found.append(ProfileRows(f"u{i:02d}", None, syncs=syncs, consent=marks[i % 5],
                                 memberships=segments))  # fmt: skip
    return found


def _delta(
    engine: AnalyticsEngine, target: ExportTarget, erased: list[str]
) -> tuple[object, list[ExportRow]]:
    counts = engine.export_delta(target, erased)
    rows = [row for batch in engine.export_rows(4) for row in batch]
    delivered = Delivered(
        added=[(uid, did) for action, uid, did in rows if action == "add"][:-1],  # one rejected
        dropped=[uid for action, uid, _ in rows if action == "remove"],
        kept=[uid for action, uid, _ in rows if action == "keep"],
        erased=[did for action, _, did in rows if action == "erased"],
    )
    engine.commit_export(target.destination, "seg", delivered, target.now)
    return counts, rows


@pytest.fixture
def engines(spark: SparkSession, tmp_path: Path) -> Iterator[list[AnalyticsEngine]]:
    found: list[AnalyticsEngine] = [
        DuckDBEngine(AnalyticsSettings(str(tmp_path / "dmp.duckdb"))),
        SparkEngine(AnalyticsSettings(str(tmp_path / "tables"), engine="spark"), session=spark),
    ]
    yield found
    for engine in found:
        engine.close()


def test_duckdb_and_spark_find_the_same_deltas(engines: list[AnalyticsEngine]) -> None:
    for engine in engines:
        engine.append(_profiles())
    steps: list[tuple[str | None, str | None, bool, float, list[str]]] = [
        ("dsp", VENDOR, False, NOW, ["X1", "X2"]),  # first: every allowed member
        ("dsp", VENDOR, False, NOW + 1, []),  # the rejected one again
        ("dsp", None, False, NOW + 2, []),  # no vendor ID: every marked member removed
        ("dsp", VENDOR, True, NOW + 3, ["D1"]),  # full
        ("dsp", VENDOR, False, NOW + 400 * 86_400, []),  # records due a fresh lifetime
        (None, VENDOR, False, NOW + 5, []),  # DMP uids
    ]
    seen: list[list[object]] = [[], []]
    for partner, party, full, now, erased in steps:
        target = ExportTarget("dest", "seg", partner, party, full, now, now - 30 * 86_400)
        for found, engine in zip(seen, engines, strict=True):
            found.append(_delta(engine, target, erased))
    assert seen[0] == seen[1]
    first_rows = seen[0][0][1]  # type: ignore[index]
    assert sorted(did for action, _, did in first_rows if action == "add") == [
        "D1", "D10", "D16", "D20", "D25", "D26", "D31", "D5",
    ]  # fmt: skip
    assert [did for action, _, did in first_rows if action == "erased"] == ["X1", "X2"]
    assert engines[0].exported("dest", "seg") == engines[1].exported("dest", "seg")
    assert engines[0].exported("dest", "seg")


def test_the_engines_write_the_same_files(engines: list[AnalyticsEngine], tmp_path: Path) -> None:
    for engine in engines:
        engine.append(_profiles())
    target = ExportTarget("dest", "seg", "dsp", VENDOR, False, NOW, NOW)
    for fmt in (True, False):
        written = []
        for i, engine in enumerate(engines):
            engine.export_delta(target, ["gone,1", "gone2"])
            path = tmp_path / f"{i}.{fmt}"
            engine.write_export(str(path), fmt)
            written.append(path.read_bytes())
        assert written[0] == written[1]
        # a header, the removal list, the members allowed (no marks, or valid ones), matched
        # (a lapsed sync is none): u01, u05, u10, u16, u20, u25, u26, u31
        assert written[0].count(b"\n") == fmt + 2 + 8
