"""Trait staging: what online writes do to profiles whose traits the analytics engine owns.

With an engine configured, a profile's attributes and ingested events live in the engine, not
in the key-value store. The online writers (the HTTP batch API, pulls, pending records
applied at sync) validate and resolve records as before, then append the merged updates here
instead of writing ``dmp:{uid}:t``; an erasure is staged too. The next engine job applies
them, in order, before anything else (``dmp/analytics/staged.py``), and deletes what it
applied.

One file per write, in ``directory``, named so that the names sort in write order::

    <ns since the epoch, 20 digits>-<pid>-<random>.stg   JSON: [StagedUpdate, ...]

(JSON: an attribute may be an integer of any size.)

A file is written aside, flushed to disk (``fsync``) and renamed in, and the directory is
synced: a write is durable when ``append`` returns, so an answered batch survives a crash.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import msgspec

from cookiematch.dmp.snapshot import AttributeValue

SUFFIX = ".stg"


class StagedUpdate(msgspec.Struct, array_like=True, frozen=True):
    """One profile's update at ``at``: attributes set, names removed, events (name, ts)
    added; ``partner``: whose records they were. ``erase``: the browser was erased (its
    traits go, with every update staged before)."""

    dmp_uid: str
    partner: str
    at: float
    attributes: dict[str, AttributeValue]
    remove: tuple[str, ...]
    events: tuple[tuple[str, int], ...]
    erase: bool = False


_decoder = msgspec.json.Decoder(list[StagedUpdate])


class TraitStaging:
    """The staging directory of one DMP's engine (``AnalyticsSettings.staging_directory``)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def append(self, updates: list[StagedUpdate]) -> None:
        """Stage ``updates`` durably (blocking: call it in a thread)."""
        if not updates:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
        aside = self.directory / f".{name}.tmp"
        with aside.open("wb") as out:
            out.write(msgspec.json.encode(updates))
            out.flush()
            os.fsync(out.fileno())
        os.replace(aside, self.directory / f"{name}{SUFFIX}")
        _sync_directory(self.directory)

    def files(self) -> list[Path]:
        """The staged files, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"*{SUFFIX}"))

    @staticmethod
    def read(path: Path) -> list[StagedUpdate]:
        return _decoder.decode(path.read_bytes())

    def forget(self, paths: list[Path]) -> None:
        """Delete files once what they held is applied."""
        for path in paths:
            path.unlink(missing_ok=True)
        if paths:
            _sync_directory(self.directory)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
