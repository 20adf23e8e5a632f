"""Ingestion on a real SQLite store: parsing, resolution, pending records, rejects, idempotency."""

from __future__ import annotations

import gc
import gzip
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.dmp import keys
from cookiematch.dmp.change_marks import mark_writes
from cookiematch.dmp.consent import RequestConsent
from cookiematch.dmp.ingest import Ingestor, bulk_gc
from cookiematch.dmp.ingest.pipeline import CONSENT_REASON
from cookiematch.dmp.ingest.readers import Batch, expand, read_batches
from cookiematch.dmp.ingest.records import UID, Checker, RawRecord, parse_json, parse_row, uid_ok
from cookiematch.dmp.ingest.rejects import Reject, reject_code
from cookiematch.dmp.service import CallbackStatus, DmpService
from cookiematch.dmp.traits.schema import TraitCatalog, TraitDef, TraitKind
from cookiematch.errors import RecordError
from cookiematch.storage import Store
from cookiematch.storage.base import FieldWrite

from .helpers import NOW, FakeClock

CATALOG = TraitCatalog(
    traits={
        "age": TraitDef("age", TraitKind.NUMBER, 30 * DAY),
        "vip": TraitDef("vip", TraitKind.BOOL, 30 * DAY),
        "tags": TraitDef("tags", TraitKind.LIST, 30 * DAY),
        "purchase": TraitDef("purchase", TraitKind.EVENT, 30 * DAY),
    }
)
TS = int(NOW) - 3600


def line(uid: str, **body: object) -> bytes:
    return msgspec.json.encode({"uid": uid, **body})


def batch(*lines: bytes) -> Batch:
    return Batch("test.jsonl", [(i, raw) for i, raw in enumerate(lines, 1)])


async def synced(service: DmpService, clock: FakeClock, partner_uid: str, dmp_uid: str) -> None:
    await service.matches.record("analytics", dmp_uid, partner_uid, clock())


# --- records --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b'{"uid": "u", "attributes": {"a": ' + b"[" * 1000 + b"]" * 1000 + b"}}", "got `array`"),
        (b"[" * 1000 + b"]" * 1000, "Expected `object`"),
        (b'{"attributes": {}}', "missing required field `uid`"),
        (b'{"uid": "a b"}', "uid: expected 1-256 printable ASCII"),
        (b'{"uid": "u", "attributes": {"bad name": 1}}', "attributes: bad name"),
        (b'{"uid": "u", "attributes": {"age": "old"}}', "attributes.age: expected number"),
        (b'{"uid": "u", "attributes": {"vip": 1}}', "attributes.vip: expected bool"),
        (b'{"uid": "u", "events": [{"name": "age", "ts": 1}]}', "is a number attribute"),
        (b'{"uid": "u", "events": [{"name": "x", "ts": 9999999999}]}', "events[0].ts"),
        (b'{"uid": "u", "events": [{"name": "x"}]}', "missing required field `ts`"),
        (b'{"uid": "u", "extra": 1}', "unknown field `extra`"),
    ],
)
def test_bad_json_records_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(RecordError, match=None) as caught:
        parse_json(raw, CATALOG, NOW)
    assert reason in str(caught.value)


def test_json_record() -> None:
    raw = line("u1", attributes={"age": 31, "x": None}, events=[{"name": "purchase", "ts": TS}])
    record = parse_json(raw, CATALOG, NOW)
    assert record.attributes == {"age": 31, "x": None}
    assert record.events == (("purchase", TS),)


def test_csv_rows_convert_declared_types() -> None:
    row = {"uid": "u1", "age": "31", "vip": "true", "tags": "a|b", "city": "Paris", "empty": ""}
    record = parse_row({**row, "event": "purchase", "ts": str(TS), "remove": "x|y"}, CATALOG, NOW)
    assert record.attributes == {"age": 31, "vip": True, "tags": ["a", "b"], "city": "Paris"}
    assert record.events == (("purchase", TS),) and record.remove == ("x", "y")
    with pytest.raises(RecordError, match="age: expected a number"):
        parse_row({"uid": "u1", "age": "old"}, CATALOG, NOW)
    with pytest.raises(RecordError, match="as many cells"):
        parse_row({"uid": "u1", "age": None}, CATALOG, NOW)


# --- readers --------------------------------------------------------------------------------


def test_readers_gzip_csv_tsv_and_directories(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(line("u1") + b"\n\n" + line("u2")))
    (tmp_path / "b.csv").write_text("uid,tier\nu3,gold\nu4,\n")
    (tmp_path / "c.tsv").write_text("uid\ttier\nu5\tsilver\n")
    (tmp_path / "notes.txt").write_text("ignored")
    files = expand([tmp_path])
    assert [f.name for f in files] == ["a.jsonl.gz", "b.csv", "c.tsv"]
    read: list[int] = []
    got = [b for f in files for b in read_batches(f, None, 1, read.append)]
    assert [(b.lines[0][0]) for b in got] == [1, 3, 2, 3, 2]  # line numbers (CSV: header = 1)
    assert got[2].lines[0][1] == {"uid": "u3", "tier": "gold"}
    assert sum(read) == sum(f.stat().st_size for f in files)  # the progress covers the bytes
    with pytest.raises(ValueError, match="unknown format"):
        expand([tmp_path / "notes.txt"])


# --- the pipeline ---------------------------------------------------------------------------


async def test_ingest_counts_accepted_pending_and_rejected(
    ingestor: Ingestor, service: DmpService, clock: FakeClock
) -> None:
    await synced(service, clock, "A-1", "d1")
    refused: list[Reject] = []
    report = await ingestor.ingest(
        "analytics",
        [
            batch(
                line("A-1", attributes={"tier": "gold"}, events=[{"name": "purchase", "ts": TS}]),
                b'{"uid": 5}',
                line("A-2", attributes={"tier": "silver"}),
            )
        ],
        on_reject=refused.append,
    )
    assert report.counts() == {
        "records": 3, "accepted": 1, "pending": 1, "rejected": 1, "profiles": 1,
        "expired_events": 0, "resolved": 0, "values": 1,
    }  # fmt: skip
    assert refused == [Reject("test.jsonl", 2, refused[0].reason, '{"uid": 5}')]
    assert "Expected `str`, got `int`" in refused[0].reason
    snapshot = await service.profile_reader.snapshot("d1")
    assert snapshot.attributes == {"tier": "gold"}
    assert snapshot.events == {"purchase": (float(TS),)}


async def test_the_funnel_counts_outcomes_values_rejects_and_resolved_records(
    ingestor: Ingestor, service: DmpService, clock: FakeClock, quiet: RequestConsent
) -> None:
    await synced(service, clock, "A-1", "d1")
    data = batch(
        line("A-1", attributes={"tier": "gold", "age": 30, "old": None}),  # 2 values set
        line("A-2", attributes={"tier": "silver", "tags": ["a", "b"]}),  # waits for its sync
        b"{not json",
        line("A-3", attributes={"bad name!": 1}),
        line("bad uid"),
    )
    await ingestor.ingest("analytics", [data])
    counts = ingestor.funnel.snapshot()
    assert counts.ingest == {
        "analytics": {"records": 5, "accepted": 1, "pending": 1, "rejected": 3, "values": 2}
    }
    assert counts.rejects == {"analytics": {"not_json": 1, "attribute": 1, "uid": 1}}
    assert ingestor.pending.funnel is ingestor.funnel
    service.waiting = ingestor.pending
    assert await service.callback("analytics", "d2", "A-2", consent=quiet) is CallbackStatus.STORED
    assert ingestor.funnel.snapshot().ingest["analytics"] == {
        "records": 5, "accepted": 1, "pending": 1, "rejected": 3, "values": 4, "resolved": 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (CONSENT_REASON.format(partner="p"), "consent"),
        ("uid: expected 1-256 printable ASCII characters", "uid"),
        ("not JSON: unexpected character", "not_json"),
        ("more than 200 attributes or 1000 events", "too_large"),
        ("attributes.age: expected number", "attribute"),
        ("attributes: bad name 'x y'", "attribute"),
        ("events[0].ts: not a Unix time in seconds up to now", "event"),
        ("ts: expected Unix seconds, got 'x'", "event"),
        ("remove: bad name 'x y'", "remove"),
        ("Object contains unknown field `x`", "malformed"),
        ("the row does not have as many cells as the header", "malformed"),
    ],
)
def test_reject_codes(reason: str, code: str) -> None:
    assert reject_code(reason) == code


async def test_pending_records_are_applied_when_the_sync_arrives(
    ingestor: Ingestor, service: DmpService, store: Store, quiet: RequestConsent
) -> None:
    first = batch(line("A-9", attributes={"tier": "gold", "age": 40}))
    later = batch(line("A-9", attributes={"tier": "platinum"}, remove=["age"]))
    assert (await ingestor.ingest("analytics", [first, later])).pending == 2
    assert await ingestor.pending.count("analytics", "A-9") == 2
    # the partner's callback arrives in the browser that holds DMP id d9
    await service.callback("analytics", "d9", "A-9", consent=quiet)
    assert (await service.profile_reader.snapshot("d9")).attributes == {"tier": "platinum"}
    assert await store.hgetall(keys.pending_key("analytics", "A-9")) == {}


async def test_records_read_by_two_resolutions_count_once_and_a_later_one_waits(
    ingestor: Ingestor, service: DmpService, store: Store
) -> None:
    """Two callbacks of one group commit read the same waiting records: the traits are the
    same either way, the records are counted once, and a record parked after the read stays."""
    pending = ingestor.pending
    await pending.add("analytics", [parse_json(line("A-7", attributes={"x": 1}), CATALOG, NOW)])
    found = await store.hgetall(pending.waiting_key("analytics", "A-7"))
    await pending.add("analytics", [parse_json(line("A-7", attributes={"y": 2}), CATALOG, NOW)])
    assert await pending.resolve_found("analytics", "A-7", "d7", found) == 1
    assert await pending.resolve_found("analytics", "A-7", "d7", found) == 0
    assert pending.funnel.snapshot().ingest["analytics"]["resolved"] == 1
    assert (await service.profile_reader.snapshot("d7")).attributes == {"x": 1}
    assert await pending.count("analytics", "A-7") == 1  # parked after the read: still waiting
    assert await pending.resolve("analytics", "A-7", "d7") == 1
    assert (await service.profile_reader.snapshot("d7")).attributes == {"x": 1, "y": 2}
    assert pending.funnel.snapshot().ingest["analytics"]["resolved"] == 2


async def test_a_sync_stored_while_a_batch_is_written_is_rechecked(
    ingestor: Ingestor, service: DmpService, store: Store, clock: FakeClock
) -> None:
    await ingestor.pending.add(
        "analytics", [parse_json(line("A-5", attributes={"x": 1}), CATALOG, NOW)]
    )
    await synced(service, clock, "A-5", "d5")  # stored without the hook (another worker)
    report = await ingestor.ingest("analytics", [batch(line("A-6"))])
    assert report.pending == 1 and report.resolved == 0
    assert await ingestor.pending.recheck("analytics", ["A-5", "A-6"]) == 1
    assert (await service.profile_reader.snapshot("d5")).attributes == {"x": 1}


async def test_reingesting_changes_nothing(
    ingestor: Ingestor, service: DmpService, store: Store, clock: FakeClock
) -> None:
    await synced(service, clock, "A-1", "d1")
    data = [
        batch(
            line("A-1", attributes={"tier": "gold"}, events=[{"name": "purchase", "ts": TS}]),
            line("A-1", events=[{"name": "purchase", "ts": TS}, {"name": "view", "ts": TS}]),
            line("A-3", attributes={"tier": "bronze"}),
        )
    ]
    await ingestor.ingest("analytics", data)
    before = await _contents(store)
    again = await ingestor.ingest("analytics", data)
    assert again.accepted == 2 and again.pending == 1
    assert await _contents(store) == before


async def _contents(store: Store) -> dict[str, dict[str, bytes]]:
    return {
        key: {f: v for f, (v, _) in fields.items()} async for key, fields in store.scan_maps("dmp:")
    }


# --- speed-related behaviour: caches, overlap, big batches -----------------------------------


@pytest.mark.parametrize(
    "uid", ["a b", "", "x" * 257, "caf\u00e9", "tab\there", "del\x7f", "new\nline"]
)
def test_uid_rule_refuses_what_the_pattern_refuses(uid: str) -> None:
    with pytest.raises(RecordError, match="uid: expected 1-256 printable ASCII"):
        parse_json(line(uid), CATALOG, NOW)
    assert parse_json(line("x" * 256), CATALOG, NOW).uid == "x" * 256
    assert parse_json(line("!~{}%"), CATALOG, NOW).uid == "!~{}%"


@given(st.text(max_size=300))
def test_uid_rule_is_the_documented_pattern(uid: str) -> None:
    assert uid_ok(uid) == (UID.fullmatch(uid) is not None)


def test_checked_names_are_remembered_without_changing_the_rules() -> None:
    checker = Checker(CATALOG)
    good = line("u", attributes={"age": 3, "tier": "x"}, events=[{"name": "purchase", "ts": TS}])
    for _ in range(2):  # the second time from the remembered names
        assert checker.parse_json(good, NOW).attributes == {"age": 3, "tier": "x"}
        with pytest.raises(RecordError, match=r"attributes\.age: expected number"):
            checker.parse_json(line("u", attributes={"age": "old"}), NOW)
        with pytest.raises(RecordError, match=r"events\[0\]\.name: 'age' is a number attribute"):
            checker.parse_json(line("u", events=[{"name": "age", "ts": TS}]), NOW)
        with pytest.raises(RecordError, match="attributes: bad name"):
            checker.parse_json(line("u", attributes={"bad name": 1}), NOW)
        with pytest.raises(RecordError, match="remove: bad name"):
            checker.parse_json(line("u", remove=["bad name"]), NOW)
        with pytest.raises(RecordError, match="not a finite number"):
            checker.validate(RawRecord("u", {"x": float("nan")}), NOW)
        with pytest.raises(RecordError, match="longer than 1024"):
            checker.parse_json(line("u", attributes={"tier": "x" * 1025}), NOW)
        with pytest.raises(RecordError, match="over 100 items"):
            checker.parse_json(line("u", attributes={"tags": ["x"] * 101}), NOW)
    strict = Checker(TraitCatalog(reject_unknown=True))
    with pytest.raises(RecordError, match=r"attributes\.tier: unknown trait"):
        strict.parse_json(line("u", attributes={"tier": "x"}), NOW)


async def test_one_bad_line_among_good_ones_is_the_only_reject(
    ingestor: Ingestor, service: DmpService, clock: FakeClock
) -> None:
    for i in range(0, 3000, 2):  # half of the uids are synced
        await synced(service, clock, f"A-{i}", f"d{i}")
    lines = [line(f"A-{i}", attributes={"n": i}) for i in range(3000)]
    lines[1234] = b'{"uid": "A-1234", "attributes": {"n": 1}'  # cut short
    refused: list[Reject] = []
    data = [Batch("big.jsonl", [(i, raw) for i, raw in enumerate(lines[j : j + 1000], j + 1)])
            for j in range(0, 3000, 1000)]  # fmt: skip
    report = await ingestor.ingest("analytics", data, on_reject=refused.append)
    assert [(r.line, r.reason.split(":")[0]) for r in refused] == [(1235, "not JSON")]
    assert report.counts() == {
        "records": 3000, "accepted": 1499, "pending": 1500, "rejected": 1, "profiles": 1499,
        "expired_events": 0, "resolved": 0, "values": 1499,
    }  # fmt: skip
    snapshots = await service.profile_reader.snapshots(["d0", "d1232", "d1234", "d2998"])
    assert [s.attributes for s in snapshots] == [{"n": 0}, {"n": 1232}, {}, {"n": 2998}]


async def test_later_batches_win_each_batch_written_before_the_next(
    ingestor: Ingestor, service: DmpService, store: Store, clock: FakeClock
) -> None:
    await synced(service, clock, "A-1", "d1")
    calls: list[str] = []
    get_many, hset_many = store.get_many, store.hset_many

    async def reading(names: Sequence[str]) -> list[bytes | None]:
        calls.append("read")
        return await get_many(names)

    async def writing(items: Sequence[FieldWrite]) -> None:
        calls.append("write " + ",".join(sorted({key for key, _, _ in items})))
        await hset_many(items)

    store.get_many = reading  # type: ignore[method-assign]
    store.hset_many = writing  # type: ignore[method-assign]
    data = [
        batch(line("A-1", attributes={"tier": "gold", "age": 30})),
        batch(line("A-1", remove=["age"]), line("A-1", attributes={"tier": "bronze"})),
    ]
    report = await ingestor.ingest("analytics", data)
    assert report.accepted == 3 and report.profiles == 2  # written once per batch
    assert (await service.profile_reader.snapshot("d1")).attributes == {"tier": "bronze"}
    # per batch: one look-up, then one write of the merged profile, its change mark for the
    # analytics engine in the same write
    (mark,) = (key for key, _, _ in mark_writes(["d1"], clock()))
    write = "write " + ",".join(sorted([keys.traits_key("d1"), mark]))
    assert calls == ["read", write, "read", write]


def test_bulk_gc_restores_the_collector() -> None:
    before = gc.get_threshold()
    with bulk_gc():
        assert gc.get_threshold()[0] > before[0]
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
