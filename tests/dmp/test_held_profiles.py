"""HeldProfiles: records merged by profile in memory and in sorted runs on disk."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cookiematch.dmp.ingest.held import HeldProfiles
from cookiematch.dmp.traits.writes import ProfileUpdate
from cookiematch.errors import ScratchError

_VALUES = st.one_of(
    st.none(),
    st.text(max_size=3),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.lists(st.text(max_size=2), max_size=2),
)
_NAMES = st.sampled_from(["a", "b", "c"])
_RECORD = st.tuples(
    st.sampled_from(["u1", "u2", "u10", "u2x", "z"]),
    st.dictionaries(_NAMES, _VALUES, max_size=3),
    st.lists(_NAMES, max_size=2),
    st.lists(st.tuples(st.sampled_from(["buy", "open"]), st.integers(0, 9)), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_RECORD, max_size=30), st.integers(1, 4), st.integers(1, 3))
def test_drain_equals_merging_every_record_in_order(
    records: list[tuple[str, dict[str, object], list[str], list[tuple[str, int]]]],
    limit: int,
    chunk: int,
) -> None:
    held = HeldProfiles("crm", limit)
    expected: dict[str, ProfileUpdate] = {}
    for uid, attributes, remove, events in records:
        held.update_of(uid).merge(attributes, remove, events)  # type: ignore[arg-type]
        held.spill_if_full()  # every `limit` profiles go to a run on disk
        expected.setdefault(uid, ProfileUpdate("crm")).merge(attributes, remove, events)  # type: ignore[arg-type]
    chunks = list(held.drain(chunk))
    assert all(0 < len(part) <= chunk for part in chunks)
    order = [uid for part in chunks for uid in part]
    assert order == sorted(expected)  # uid order, each uid once
    drained = {uid: update for part in chunks for uid, update in part.items()}
    assert drained == expected
    assert held.empty


def test_runs_live_in_a_scratch_directory_removed_by_drain_and_by_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    held = HeldProfiles("crm", 2)
    for i in range(7):
        held.update_of(f"u{i}").merge({"n": i}, (), ())
        held.spill_if_full()
    assert held.spilled == 6 and len(held) == 1
    [scratch] = tmp_path.iterdir()
    assert sorted(p.name for p in scratch.iterdir()) == [
        "run-0.msgpack",
        "run-1.msgpack",
        "run-2.msgpack",
    ]
    assert sum(len(part) for part in held.drain()) == 7
    assert list(tmp_path.iterdir()) == []

    held = HeldProfiles("crm", 1)
    held.update_of("u").merge({"n": 1}, (), ())
    held.spill_if_full()
    assert len(list(tmp_path.iterdir())) == 1
    held.close()  # e.g. the ingestion failed: what was held is gone with the files
    assert list(tmp_path.iterdir()) == [] and held.empty


def test_a_truncated_run_is_an_error_not_fewer_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    held = HeldProfiles("crm", 3)
    for i in range(3):
        held.update_of(f"u{i}").merge({"n": i}, (), ())
    held.spill_if_full()
    [run] = next(tmp_path.iterdir()).iterdir()
    run.write_bytes(run.read_bytes()[:-5])
    with pytest.raises(ScratchError, match="truncated"):
        list(held.drain())
    held.close()


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HeldProfiles("crm", 0)


def test_a_scratch_directory_that_cannot_be_written_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    held = HeldProfiles("crm", 1)
    held.update_of("u").merge({"n": 1}, (), ())
    with pytest.raises(ScratchError, match=r"cannot write held profiles under .*missing.*TMPDIR"):
        held.spill_if_full()
    assert len(held) == 1  # still held: nothing was lost by the failed spill
