"""The staged trait files as the engine job takes them (real files, DuckDB on disk): a writer
that named its file early and syncs slowly is still applied before a later one; a file that
does not decode is set aside, counted at ``/metrics``, and the job goes on; temporary files a
crash left are swept."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from cookiematch.dmp.analytics.duckdb_engine import DuckDBEngine
from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.analytics.staged import apply_staged
from cookiematch.dmp.traits.schema import TraitCatalog, TraitDef, TraitKind
from cookiematch.dmp.traits.staging import (
    BAD,
    LOCK,
    TEMP_MARGIN,
    StagedUpdate,
    TraitStaging,
    decode,
)
from cookiematch.web.dmp.metrics import staged_set_aside

CATALOG = TraitCatalog(traits={"age": TraitDef("age", TraitKind.NUMBER, 864_000.0)})


def exposed() -> float | None:
    """The set-aside gauge as ``/metrics`` shows it."""
    return REGISTRY.get_sample_value("cookiematch_dmp_staged_files_set_aside")


def setting(age: int, at: float) -> list[StagedUpdate]:
    return [StagedUpdate("u", "crm", at, {"age": age}, (), ())]


def age_held(engine: DuckDBEngine) -> object:
    (profile,) = engine.profiles(["u"])
    return profile.attributes["age"].value


async def test_a_slow_early_writer_is_applied_before_a_later_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writer ``early`` names its file, then its ``fsync`` waits; writer ``late`` stages a
    newer value meanwhile. The job cannot list the files while ``early`` is in flight, so the
    newer value is applied last and wins."""
    staging = TraitStaging(tmp_path / "staging")
    named, release = threading.Event(), threading.Event()
    fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        if threading.current_thread().name == "early" and not os.path.isdir(f"/proc/self/fd/{fd}"):
            named.set()
            release.wait()
        fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    early = threading.Thread(target=staging.append, args=(setting(1, 1.0),), name="early")
    early.start()
    named.wait()
    staging.append(setting(2, 2.0))  # named after ``early``, complete before it
    probe = os.open(staging.directory / LOCK, os.O_RDWR)
    try:  # the job's exclusive lock waits for ``early``
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(probe)
    engine = DuckDBEngine(AnalyticsSettings(str(tmp_path / "dmp.duckdb")))
    try:
        job = asyncio.create_task(apply_staged(staging, engine, CATALOG))
        await asyncio.sleep(0)
        release.set()
        applied = await job
        await asyncio.to_thread(early.join)
        applied += await apply_staged(staging, engine, CATALOG)
        assert applied == 2 and staging.files() == []
        assert age_held(engine) == 2
    finally:
        release.set()
        engine.close()


async def test_a_file_that_does_not_decode_is_set_aside(tmp_path: Path) -> None:
    """... and counted at ``/metrics`` until an operator removes it."""
    staging = TraitStaging(tmp_path / "staging", on_set_aside=staged_set_aside)
    staging.append(setting(1, 1.0))
    torn = staging.directory / "00000000000000000001-1-aaaaaaaa.stg"  # sorts first
    torn.write_bytes(b'[["u","crm",1.0,{"age"')
    wrong = staging.directory / "00000000000000000002-1-bbbbbbbb.stg"
    wrong.write_bytes(b'[{"not": "an update"}]')
    engine = DuckDBEngine(AnalyticsSettings(str(tmp_path / "dmp.duckdb")))
    try:
        assert await apply_staged(staging, engine, CATALOG) == 1
        assert age_held(engine) == 1
        assert staging.files() == []
        bad = staging.directory / BAD
        assert sorted(p.name for p in bad.iterdir()) == [torn.name, wrong.name]
        assert (bad / torn.name).read_bytes() == b'[["u","crm",1.0,{"age"'
        assert exposed() == 2
        staging.append(setting(3, 3.0))  # later jobs go on
        (bad / torn.name).unlink()  # an operator looked at it
        assert await apply_staged(staging, engine, CATALOG) == 1
        assert age_held(engine) == 3
        assert exposed() == 1
    finally:
        engine.close()


def test_the_job_sweeps_stale_temporary_files_only(tmp_path: Path) -> None:
    staging = TraitStaging(tmp_path / "staging")
    staging.append(setting(1, 1.0))
    stale = staging.directory / ".00000000000000000001-1-aaaaaaaa.tmp"
    fresh = staging.directory / f".{time.time_ns():020d}-1-bbbbbbbb.tmp"
    stale.write_bytes(b"[")
    fresh.write_bytes(b"[")
    old = time.time() - TEMP_MARGIN - 60
    os.utime(stale, (old, old))
    assert len(staging.files()) == 1
    assert not stale.exists() and fresh.exists()


def test_the_first_append_makes_the_directory_and_its_parents(tmp_path: Path) -> None:
    staging = TraitStaging(tmp_path / "a" / "b" / "staging")
    staging.append(setting(1, 1.0))
    (path,) = staging.files()
    assert decode(path.read_bytes()) == setting(1, 1.0)
