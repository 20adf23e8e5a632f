"""``cookiematch dmp ingest --workers N``: records dealt out by partner uid to worker processes.

The dealing is checked as a property; the command end to end (real worker processes, a real
SQLite file) must leave the same profiles and rejects as one process does.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sqlite3
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.cli.dmp_workers import MAX_AUTO_WORKERS, PARALLEL_FROM_BYTES, auto_workers
from cookiematch.cli.main import main
from cookiematch.config import load_config
from cookiematch.dmp.ingest.readers import Batch, Payload
from cookiematch.dmp.ingest.shards import deal, worker_of
from cookiematch.dmp.snapshot import ProfileSnapshot
from cookiematch.roots.dmp import open_core
from cookiematch.storage import Durability, open_store
from cookiematch.storage import sqlite as sqlite_store

from .test_ingest_cli import NOW, _seed, records, write_config

LINE = st.one_of(
    st.builds(lambda u: msgspec.json.encode({"uid": u, "attributes": {}}), st.text(max_size=6)),
    st.sampled_from([b"{broken", b"[]", b'{"uid": 7}', b'{"attributes": {}}']),
    st.builds(lambda u: {"uid": u, "age": "1"}, st.text(max_size=6)),  # CSV rows
)


def _uid(payload: Payload) -> str | None:
    if isinstance(payload, dict):
        return payload.get("uid") or None
    try:
        found = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return None
    uid = found.get("uid") if isinstance(found, dict) else None
    return uid if isinstance(uid, str) and uid else None


@given(
    files=st.lists(st.lists(LINE, max_size=40), min_size=1, max_size=3),
    workers=st.integers(1, 4),
    size=st.integers(1, 7),
    chunk=st.integers(1, 9),
)
def test_deal_gives_each_line_once_in_order_and_each_uid_one_worker(
    files: list[list[Payload]], workers: int, size: int, chunk: int
) -> None:
    batches = []
    for f, lines in enumerate(files):
        numbered = list(enumerate(lines, 1))
        for i in range(0, len(numbered), chunk):
            batches.append(Batch(f"f{f}", numbered[i : i + chunk]))

    dealt = list(deal(batches, workers, size))

    seen = [(b.source, number) for _, b in dealt for number, _ in b.lines]
    expected = [(f"f{f}", n) for f, lines in enumerate(files) for n in range(1, len(lines) + 1)]
    assert sorted(seen) == sorted(expected)  # every line exactly once
    by_worker: dict[int, list[tuple[str, int]]] = defaultdict(list)
    owner: dict[str, int] = {}
    for worker, batch in dealt:
        assert 0 <= worker < workers and 0 < len(batch.lines) <= size
        for number, payload in batch.lines:
            by_worker[worker].append((batch.source, number))
            uid = _uid(payload)
            if uid is not None:
                assert owner.setdefault(uid, worker) == worker
                assert worker == worker_of(uid, workers)
    for order in by_worker.values():
        assert order == sorted(order)  # each worker gets its lines in file order


def test_auto_workers_two_per_cpu_for_large_data_else_in_process() -> None:
    assert auto_workers(PARALLEL_FROM_BYTES - 1) == 1
    cpus = os.cpu_count() or 1
    assert auto_workers(PARALLEL_FROM_BYTES) == min(2 * cpus, MAX_AUTO_WORKERS)


def _data(directory: Path) -> Path:
    data = directory / "in"
    data.mkdir()
    lines = [
        {"uid": f"C-{i % 7}", "attributes": {"age": i, "tier": f"t{i % 3}"}} for i in range(60)
    ]
    lines += [{"uid": f"C-{i % 7}", "events": [{"name": "buy", "ts": NOW - i}]} for i in range(9)]
    lines.append({"uid": "C-late", "attributes": {"tier": "silver"}})
    (data / "a.jsonl").write_bytes(records(*lines) + b"{broken\n" + records({"uid": "C-1"}))
    (data / "b.csv").write_text(f"uid,age,event,ts\nC-2,40,buy,{NOW - 99}\nC-3,old,,\n")
    return data


async def _snapshots(config: Path, uids: list[str]) -> list[ProfileSnapshot]:
    async with open_core(load_config(config)) as core:
        return await core.profile_reader.snapshots(uids)


def _ingest(
    tmp: Path, workers: int, hold: int = 1000
) -> tuple[str, list[tuple[str, int, str]], list[object]]:
    tmp.mkdir()
    config = write_config(tmp)
    asyncio.run(_seed(config, {f"C-{i}": f"d-{i}" for i in range(7)}))
    rejects = tmp / "rejects.jsonl"
    argv = ["dmp", "ingest", "--config", str(config), "--partner", "crm"]
    argv += ["--workers", str(workers), "--batch-size", "5", "--rejects", str(rejects)]
    argv += ["--hold-profiles", str(hold)]
    result = CliRunner().invoke(main, [*argv, str(_data(tmp))])
    assert result.exit_code == 0, result.output
    refused = [msgspec.json.decode(x) for x in rejects.read_text().splitlines()]
    found = sorted((Path(r["source"]).name, r["line"], r["reason"]) for r in refused)
    profiles = asyncio.run(_snapshots(config, [f"d-{i}" for i in range(7)]))
    return result.output.splitlines()[-1], found, [(p.attributes, p.events) for p in profiles]


def test_workers_leave_the_same_profiles_and_rejects_as_one_process(tmp_path: Path) -> None:
    alone = _ingest(tmp_path / "one", 1)
    shared = _ingest(tmp_path / "three", 3, hold=2)  # each worker writes every 2 profiles
    flushing = _ingest(tmp_path / "flushing", 1, hold=1)
    assert flushing[1:] == alone[1:]

    counted = re.compile(r"(\d+) (records|accepted|pending|rejected)")
    assert counted.findall(shared[0]) == counted.findall(alone[0])  # profile writes differ
    assert counted.findall(alone[0]) == [
        ("74", "records"),
        ("71", "accepted"),
        ("1", "pending"),
        ("2", "rejected"),
        ("0", "pending"),  # records resolved
    ]
    assert shared[1] == alone[1] and [(r[0], r[1]) for r in alone[1]] == [
        ("a.jsonl", 71),
        ("b.csv", 3),
    ]
    assert shared[2] == alone[2]
    # C-5's last attributes come from record 54, its one event from record 5 of the second run
    assert alone[2][5] == ({"age": 54, "tier": "t0"}, {"buy": (NOW - 5,)})


def test_a_worker_that_fails_fails_the_command(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on: the workers cannot connect
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = write_config(tmp_path)
    text = config.read_text().replace(
        f'url = "sqlite:///{tmp_path / "dmp.db"}"', f'url = "redis://127.0.0.1:{port}/0"'
    )
    config.write_text(text)
    data = _data(tmp_path)
    argv = ["dmp", "ingest", "--config", str(config), "--partner", "crm", "--workers", "2"]
    result = CliRunner().invoke(main, [*argv, str(data)])
    assert result.exit_code == 1
    assert "ingest worker ingest-" in result.output and "redis" in result.output.lower()


def test_a_queued_write_that_fails_is_counted_and_fails_the_ingestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "BULK_BUSY_TIMEOUT", 0.2)
    config = write_config(tmp_path)
    asyncio.run(_seed(config, {"C-1": "d-1"}))
    holder = sqlite3.connect(tmp_path / "dmp.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock throughout
    try:

        async def queued_write_lost() -> int:
            store = open_store(f"sqlite:///{tmp_path / 'dmp.db'}", durability=Durability.ASYNC)
            await store.set("k", b"v")  # ASYNC: returns once queued
            await store.close()
            return store.lost

        assert asyncio.run(queued_write_lost()) == 1
        argv = ["dmp", "ingest", "--config", str(config), "--partner", "crm", "--workers", "1"]
        data = tmp_path / "a.jsonl"
        data.write_bytes(records({"uid": "C-1", "attributes": {"age": 3}}))
        result = CliRunner().invoke(main, [*argv, str(data)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 1
    assert "queued writes were not stored" in result.output
