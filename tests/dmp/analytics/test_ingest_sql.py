"""Ingestion in SQL on the engine against the per-record path, both real (SQLite on disk,
DuckDB on disk): one edge-case set of files (every reject reason, duplicates, deletes after
sets, events over the cap, unsynced uids, gzip, CRLF, quoted fields, unicode) ingested both
ways gives the same profiles (the engine's tables against the load of the key-value store's
result), the same rejects, the same counts and the same pending records."""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.dmp import keys
from cookiematch.dmp.analytics import ingest_sql, lines, sync_map
from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.ingest_sql import SqlIngest, ingest_files
from cookiematch.dmp.analytics.lines import MAX_LINE_BYTES, LineEnds
from cookiematch.dmp.analytics.load import LoadContext, load_profiles
from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.analytics.tables import ATTRIBUTES, CONSENT, EVENTS, PROFILES, SYNCS
from cookiematch.dmp.ingest import build_ingestor
from cookiematch.dmp.ingest.pipeline import IngestReport
from cookiematch.dmp.ingest.readers import Batch, read_batches
from cookiematch.dmp.matches import MatchTable, ReverseMatch
from cookiematch.dmp.traits.schema import TraitCatalog, TraitDef, TraitKind
from cookiematch.dmp.traits.writes import ProfileUpdate, TraitStore
from cookiematch.storage import Store, open_store

from ..helpers import NOW, FakeClock

DAY = float(SECONDS_PER_DAY)
PARTNER = "crm"
TTL = 390 * DAY
T = int(NOW)
CATALOG = TraitCatalog(
    traits={
        "score": TraitDef("score", TraitKind.NUMBER, 20 * DAY),
        "vip": TraitDef("vip", TraitKind.BOOL, 30 * DAY),
        "tags": TraitDef("tags", TraitKind.LIST, 30 * DAY),
        "city": TraitDef("city", TraitKind.STRING, 10 * DAY),
        "purchase": TraitDef("purchase", TraitKind.EVENT, 30 * DAY),
    },
    max_events_per_name=3,
)


def j(uid: object, **body: object) -> bytes:
    return msgspec.json.encode({"uid": uid, **body})


def ev(name: object, ts: object) -> dict[str, object]:
    return {"name": name, "ts": ts}


NOT_UTF8 = b'{"uid":"p1","attributes":{"t":"\xff"}}'

JSON_LINES = [
    j("p1", attributes={"tier": "gold", "age": 31, "score": 1.5, "vip": True, "tags": ["a", "b"]}),
    j("p1", attributes={"tier": "platinum", "old": None}, remove=["age"]),
    j("p1", attributes={"age": 40, "big": 2**70, "f": 1.0, "neg": -0.25}, remove=["age", "vip"]),
    b"",
    b"   ",
    j("p2", events=[ev("purchase", T - 100), ev("purchase", T - 100), ev("purchase", T - 200),
                    ev("purchase", T - 300), ev("purchase", T - 400), ev("visit", T - 5.7)]),
    j("p2", events=[ev("purchase", T - 50)], attributes={"city": "Zürich 東京 👍 e\u0301"}),
    j("p2", events=[ev("purchase", T - 40 * int(DAY)), ev("visit", T - 100 * int(DAY))]),
    j("u9", attributes={"tier": "x"}),
    j("u9", attributes={"tier": "y"}, events=[ev("visit", T)]),
    j("p7", attributes={"new": "yes"}),
    j("p6", attributes={"tier": "gold"}),
    j("p1", attributes={"tier": "last"}),
    b" \t" + j("p7", attributes={"spaced": True}),  # an object after whitespace
    # refused
    b"  [1]",
    b'{"uid":"p1",',
    b"[1, 2]",
    b'{"uid": "p1"} trailing',
    NOT_UTF8,
    j("has space"),
    j(""),
    j("x" * 257),
    j("é"),
    j(5),
    j("p1", extra=1),
    j("p1", attributes={"x": {"a": 1}}),
    j("p1", attributes=[1]),
    j("p1", attributes=None),
    j("p1", events=[{"name": "purchase"}]),
    j("p1", events=[ev("purchase", True)]),
    j("p1", events=[ev("purchase", T), None]),
    j("p1", events={"name": "x"}),
    j("p1", remove=[1]),
    j("p1", attributes={f"a{i}": i for i in range(201)}),
    j("p1", attributes={"bad name": 1}),
    j("p1", attributes={"n" * 65: None}),
    j("p1", attributes={"long": "x" * 1025}),
    j("p1", attributes={"long": "é" * 1024}),  # at the limit: accepted
    j("p1", attributes={"list": [str(i) for i in range(101)]}),
    j("p1", attributes={"list": ["a", 1]}),
    j("p1", attributes={"list": ["a", "x" * 1025]}),
    j("p1", attributes={"score": "high"}),
    j("p1", attributes={"vip": 1}),
    j("p1", attributes={"tags": "a"}),
    j("p1", attributes={"purchase": 1}),
    j("p1", attributes={"score": True}),
    j("p1", remove=["bad name"]),
    j("p1", events=[ev("bad name", T)]),
    j("p1", events=[ev("city", T)]),
    j("p1", events=[ev("purchase", T + 2 * int(DAY))]),
    j("p1", events=[ev("purchase", 0)]),
    j("p1", events=[ev("purchase", -5)]),
    j("p1", events=[ev("purchase", T)] * 1001),
    j("p1", attributes={"tier": "after the rejects"}),
]  # fmt: skip

CSV_TEXT = (
    "uid,tier,score,vip,tags,event,ts,remove\r\n"
    f"p3,gold,12,true,a|b||c,purchase,{T - 10},\r\n"
    "p3,,1.50,0,,,,tier\r\n"
    'p3,"quoted, with comma ""and quotes""\r\nand a newline",1e3,TRUE,,,,\r\n'
    "p4,silver,abc,,,,,\r\n"
    "p4,silver,,maybe,,,,\r\n"
    "p4,silver,,,,purchase,soon,\r\n"
    "p4,silver,,,,purchase,,\r\n"
    "p4,too,many,cells,x,y,z,w,extra\r\n"
    "p4,short\r\n"
    "\r\n"
    "p5,ü,1_000,1,x,,,\r\n"
    "u9,gold,,,,,,\r\n"
    " p4,gold,,,,,,\r\n"
    "p5,,-0,,,,,\r\n"
    "p5,, 7 ,,,,,\r\n"
    "p5,,2.0,,,,,\r\n"
    "p5,,inf,,,,,\r\n"
    f"p5,,,,,purchase,{T - 1}.9,\r\n"
    "p5,,,,,city,1,\r\n"
    "p5,,,,,,,bad name\r\n"
)


def files(tmp_path: Path, utf8: bool = False) -> list[Path]:
    """The edge-case files; ``utf8``: without the line that is not UTF-8, so the engine's
    reader frames the JSON Lines files (``lines.py``)."""
    body = b"\r\n".join(line for line in JSON_LINES if not utf8 or line != NOT_UTF8) + b"\r\n"
    plain = tmp_path / "a.jsonl"
    plain.write_bytes(body)
    packed = tmp_path / "b.ndjson.gz"
    packed.write_bytes(gzip.compress(body.replace(b"p1", b"q1")))
    table = tmp_path / "c.csv"
    table.write_bytes(CSV_TEXT.encode())
    tabbed = tmp_path / "d.tsv.gz"
    tabbed.write_bytes(gzip.compress(CSV_TEXT.replace(",", "\t").encode()))
    return [plain, packed, table, tabbed]


async def seed(store: Store, clock: FakeClock) -> None:
    """Syncs (both ways, and one reverse entry alone), a refusing consent, held traits."""
    matches = MatchTable(store, TTL)
    for i in (1, 2, 3, 4, 5, 6):
        await matches.record(PARTNER, f"d{i}", f"p{i}", clock())
    await matches.record(PARTNER, "d11", "q1", clock())
    await store.set(
        keys.reverse_key(PARTNER, "p7"), msgspec.json.encode(ReverseMatch("d7", clock())), ttl=TTL
    )
    await store.set(keys.reverse_key(PARTNER, "bad"), b"not json", ttl=TTL)
    await store.hset(
        keys.consent_key("d6"), {"*": msgspec.json.encode([clock(), clock() - DAY, False])}
    )
    await store.hset(
        keys.consent_key("d5"),
        {"*": msgspec.json.encode([clock(), clock() - DAY, False]),
         PARTNER: msgspec.json.encode([clock(), clock() - DAY, False])},
    )  # fmt: skip
    held = ProfileUpdate(PARTNER)
    held.merge({"vip": False, "tier": "silver", "kept": "yes"}, (), {("purchase", T - 500)})
    await TraitStore(store, CATALOG, clock=clock).apply({"d1": held, "d3": held})


def dump(engine: DuckDBEngine) -> dict[str, list[tuple[Any, ...]]]:
    db = engine.connection
    return {
        t: db.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
        for t in (PROFILES, ATTRIBUTES, EVENTS, SYNCS, CONSENT)
    }


async def pending_of(store: Store) -> list[tuple[str, dict[str, tuple[bytes, float | None]]]]:
    return [(key, dict(fields)) async for key, fields in store.scan_maps("dmp:pend:")]


FRAMINGS = {
    "python": "every file framed by readers.read_batches, all lines in one chunk",
    "engine": "JSON Lines framed by the engine's reader, in chunks of 7 lines",
    "fallback": "JSON Lines not UTF-8: framed in Python after the engine's reader refused",
}


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_sql_ingestion_gives_what_the_per_record_path_gives(
    tmp_path: Path, clock: FakeClock, framing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = files(tmp_path, utf8=framing == "engine")
    given: list[Path | Iterable[Batch]] = [read_batches(p, None, 7) for p in paths]
    if framing != "python":
        given = list(paths)
        monkeypatch.setattr(ingest_sql, "CHUNK_LINES", 7)
    kv = open_store(f"sqlite://{tmp_path / 'kv.db'}", clock=clock)
    sql_kv = open_store(f"sqlite://{tmp_path / 'sql.db'}", clock=clock)
    before = DuckDBEngine(AnalyticsSettings(str(tmp_path / "a" / "kv.duckdb")))
    engine = DuckDBEngine(AnalyticsSettings(str(tmp_path / "b" / "sql.duckdb")))
    context = LoadContext(clock(), CATALOG, TTL)
    try:
        for store in (kv, sql_kv):
            await seed(store, clock)

        traits = TraitStore(kv, CATALOG, clock=clock)
        expected = await build_ingestor(kv, traits, clock=clock).ingest(
            PARTNER,
            itertools.chain.from_iterable(read_batches(p, None, 7) for p in paths),
            keep_rejects=True,
        )
        await load_profiles(kv, before, context)

        await load_profiles(sql_kv, engine, context)
        settings = {n: engine.setting(n) for n in ("memory_limit", "preserve_insertion_order")}
        pending = build_ingestor(sql_kv, TraitStore(sql_kv, CATALOG, clock=clock), clock=clock)
        found = await ingest_files(
            engine.connection,
            sql_kv,
            pending.pending,
            PARTNER,
            given,
            CATALOG,
            clock=clock,
            keep_rejects=True,
        )

        # the connection as it was: settings back, the run's tables and database gone
        assert {n: engine.setting(n) for n in settings} == settings
        left = engine.connection.execute(
            "SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, 'ing_') "
            "UNION ALL SELECT database_name FROM duckdb_databases() "
            "WHERE starts_with(database_name, 'ing_')"
        ).fetchall()
        assert left == []

        for table, rows in dump(before).items():
            got = dump(engine)[table]
            extra, missing = [r for r in got if r not in rows], [r for r in rows if r not in got]
            assert (extra, missing) == ([], []), table
        assert sorted(found.rejects, key=_order) == sorted(expected.rejects, key=_order)
        assert counts(found) == counts(expected)
        # each profile written once, each lapsed event counted once (the per-record path
        # counts them per batch it writes)
        assert 0 < found.profiles <= expected.profiles
        assert 0 < found.expired_events <= expected.expired_events
        assert await pending_of(sql_kv) == await pending_of(kv)

        # what the file was made to hold
        assert expected.reasons.keys() >= {
            "uid", "not_json", "malformed", "too_large", "attribute", "event", "remove", "consent",
        }  # fmt: skip
        attributes = {
            (p, n): (kind, text, num_int)
            for p, n, kind, text, num_int, *_ in dump(engine)[ATTRIBUTES]
        }
        assert attributes[("d1", "tier")][1] == "after the rejects"
        assert ("d1", "vip") not in attributes and ("d1", "old") not in attributes
        assert attributes[("d1", "age")][2] == "40" and attributes[("d1", "kept")][1] == "yes"
        assert attributes[("d1", "big")][2] == str(2**70)
        assert attributes[("d3", "tier")][1] == 'quoted\t with comma "and quotes"\r\nand a newline'
        assert attributes[("d7", "new")][1] == "yes"  # a profile the file made
        assert attributes[("d7", "spaced")][0] == "bool"
        purchases = [e for e in dump(engine)[EVENTS] if e[:2] == ("d2", "purchase")]
        assert [e[2] for e in purchases] == [T - 200, T - 100, T - 50]  # capped at 3
        assert found.pending == 6 and found.expired_events > 0
    finally:
        before.close()
        engine.close()
        await kv.close()
        await sql_kv.close()


def _order(item: Any) -> tuple[str, int]:
    return item.source, item.line


def counts(report: IngestReport) -> tuple[dict[str, int], dict[str, int]]:
    """The counts both paths count alike (not ``profiles`` and ``expired_events``)."""
    found = report.counts()
    del found["profiles"], found["expired_events"]
    return found, report.reasons


async def test_the_sync_map_is_every_decodable_reverse_entry(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = open_store(f"sqlite://{tmp_path / 'kv.db'}", clock=clock)
    try:
        await seed(store, clock)
        await MatchTable(store, TTL).record("other", "d9", "p{1}", clock())
        await MatchTable(store, TTL).record(PARTNER, "d8", "a b/{c}", clock())
        await MatchTable(store, TTL).record(PARTNER, "d\u00e9\n", "\u00e9%+\u00ff}", clock())
        undecodable = [
            b'["d"]',
            b'["d", "x"]',
            b"[1, 2]",
            b'["d", NaN]',
            b'["d", 1e400]',
            b'["d", null]',
            b"\xff",
            b'{"dmp_uid": "d", "at": 1}',
            b'["d", 1] x',
            b'["d", true]',
            b'["d", "1"]',
            b'["d", [1]]',
            b'"d"',
            b'{"0": "d", "1": 1}',
        ]
        for i, value in enumerate(undecodable):
            await store.set(keys.reverse_key(PARTNER, f"u{i}"), value, ttl=TTL)
        await store.set(keys.reverse_key(PARTNER, "extra"), b' ["d12", 1, 2] ', ttl=TTL)
        await store.set(keys.reverse_key(PARTNER, "gone"), b'["d13", 1]', ttl=1)
        await store.set(keys.reverse_key(PARTNER, "x") + "!", b'["d14", 1]', ttl=TTL)
        clock.now += 2
        db = duckdb.connect()
        for batch in (1, 2, 1000):
            await sync_map.export(store, PARTNER, db, "pairs", batch=batch)
            pairs = db.execute("SELECT * FROM pairs").fetchall()
            assert sorted(pairs) == sorted(
                [(f"p{i}", f"d{i}") for i in range(1, 8)]
                + [("q1", "d11"), ("a b/{c}", "d8"), ("\u00e9%+\u00ff}", "d\u00e9\n")]
                + [("extra", "d12")]
            )
        assert [name for (name,) in db.execute("SHOW TABLES").fetchall()] == ["pairs"]
    finally:
        await store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(float(T))


@pytest.mark.parametrize(
    ("body", "ends"),
    [
        (b'{"uid":"a"}\r\n\r\n{"uid":"b"}\r\n', LineEnds("\r\n", 3)),
        (b'{"uid":"a"}\n\n{"uid":"b"}', LineEnds("\n", 3)),
        (b'{"uid":"a"}\r{"uid":"b"}\n', None),
        (b'{"uid":"a"}\r\n{"uid":"b"}\n', None),
        (b'{"uid":"a"}\n{"uid":"b"}\r', None),
    ],
)
@pytest.mark.parametrize("block", [1, 2, 3, 5, 1 << 20])
def test_line_ends_across_blocks(
    tmp_path: Path, body: bytes, ends: LineEnds | None, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CR LF split by the pass's blocks is one line ending; a lone CR anywhere is not."""
    monkeypatch.setattr(lines, "SCAN_BYTES", block)
    path = tmp_path / "f.jsonl"
    path.write_bytes(body)
    assert lines.line_ends(path) == ends


@pytest.mark.parametrize(
    ("name", "body", "framed"),
    [
        ("lf.jsonl", b'{"uid":"a"}\n\n  \n{"uid":"b"}', True),
        ("crlf.jsonl", b'{"uid":"a"}\r\n\r\n{"uid":"b"}\r\n', True),
        ("packed.jsonl.gz", gzip.compress(b'{"uid":"a"}\n \t\n{"uid":"b"}\n'), True),
        ("empty.jsonl", b"", True),
        ("lone-cr.jsonl", b'{"uid":"a"}\r{"uid":"b"}\n', False),
        ("mixed.jsonl", b'{"uid":"a"}\r\n{"uid":"b"}\n', False),
        ("not-utf8.jsonl", b'{"uid":"a"}\n' + NOT_UTF8 + b"\n", False),
        ("nul.jsonl", b'{"uid":"a\x00"}\n', False),
        ("delimiter.jsonl", b'{"uid":"a\x01"}\n', False),
        ("long.jsonl", b'{"uid":"a"}\n' + b" " * (MAX_LINE_BYTES + 1) + b"\n", False),
    ],
)
def test_the_engine_frames_a_file_only_as_the_python_reader_would(
    tmp_path: Path, name: str, body: bytes, framed: bool
) -> None:
    path = tmp_path / name
    path.write_bytes(body)
    engine = DuckDBEngine(AnalyticsSettings(str(tmp_path / "e.duckdb")))
    try:
        ingest = SqlIngest(engine.connection, CATALOG)
        assert ingest.stage_path(path) is framed
        if not framed:  # nothing staged: the caller frames it in Python
            assert ingest.staged.lines == 0 and ingest.staged.sources == []
            return
        staged = engine.connection.execute(
            f"SELECT line, body FROM {ingest_sql.LINES} ORDER BY seq"
        ).fetchall()
        python = [
            (number, payload.decode().rstrip("\r\n"))
            for batch in read_batches(path, "jsonl", 100)
            for number, payload in batch.lines
            if isinstance(payload, bytes)
        ]
        assert staged == python and ingest.staged.lines == len(python)
    finally:
        engine.close()
