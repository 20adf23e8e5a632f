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
synced (and, when a writer first makes it, the directory's parent): a write is durable when
``append`` returns, so an answered batch survives a crash.

Order: a writer holds a shared ``flock`` on ``<directory>/.lock`` while it takes the name,
writes, syncs and renames; the job lists the files under the exclusive lock (``files``). So
every file it lists is complete, and any file staged after it lists is named later: a writer
that named its file early and syncs slowly is never applied after one that named it later.
Under that lock the job also removes the temporary files a crash left (older than
``TEMP_MARGIN``). A file that does not decode is moved to ``<directory>/bad/``
(``set_aside``) and the job goes on; how many lie there is reported (``on_set_aside``) each
time the job lists the files and each time one is set aside.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from cookiematch.dmp.snapshot import AttributeValue

SUFFIX = ".stg"
LOCK = ".lock"
BAD = "bad"
"""Where a staged file that does not decode is moved, for an operator to look at."""
TEMP_MARGIN = 3600.0
"""Seconds a temporary file must have lain untouched before the job removes it."""


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


def decode(body: bytes) -> list[StagedUpdate]:
    """A staged file's updates (raises ``msgspec.DecodeError`` when it does not decode)."""
    return _decoder.decode(body)


class TraitStaging:
    """The staging directory of one DMP's engine (``AnalyticsSettings.staging_directory``)."""

    def __init__(
        self, directory: str | Path, *, on_set_aside: Callable[[int], None] | None = None
    ) -> None:
        self.directory = Path(directory)
        self._made = False
        self._on_set_aside = on_set_aside

    def append(self, updates: list[StagedUpdate]) -> None:
        """Stage ``updates`` durably (blocking: call it in a thread)."""
        if not updates:
            return
        if not self._made:
            _make_directory(self.directory)
            self._made = True
        with self._locked(fcntl.LOCK_SH):
            name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
            aside = self.directory / f".{name}.tmp"
            with aside.open("wb") as out:
                out.write(msgspec.json.encode(updates))
                out.flush()
                os.fsync(out.fileno())
            os.replace(aside, self.directory / f"{name}{SUFFIX}")
            _sync_directory(self.directory)

    def files(self) -> list[Path]:
        """The staged files, oldest first, listed under the exclusive lock (every one complete,
        any staged later named after them); temporary files a crash left are removed."""
        if not self.directory.is_dir():
            return []
        with self._locked(fcntl.LOCK_EX):
            found = sorted(self.directory.glob(f"*{SUFFIX}"))
            self._sweep(time.time() - TEMP_MARGIN)
        self._report()
        return found

    def set_aside_count(self) -> int:
        """How many files lie in ``bad/``."""
        try:
            return sum(1 for path in (self.directory / BAD).iterdir() if path.is_file())
        except FileNotFoundError:
            return 0

    def _report(self) -> None:
        if self._on_set_aside is not None:
            self._on_set_aside(self.set_aside_count())

    def set_aside(self, path: Path) -> Path:
        """Move a staged file that does not decode to ``bad/``; return where it went."""
        bad = self.directory / BAD
        _make_directory(bad)
        target = bad / path.name
        os.replace(path, target)
        _sync_directory(bad)
        _sync_directory(self.directory)
        self._report()
        return target

    @contextmanager
    def _locked(self, how: int) -> Iterator[None]:
        fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, how)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _sweep(self, before: float) -> None:
        """Remove the temporary files last changed before ``before`` (under the exclusive
        lock no write is in flight)."""
        removed = False
        for path in self.directory.glob(".*.tmp"):
            try:
                if path.stat().st_mtime < before:
                    path.unlink()
                    removed = True
            except FileNotFoundError:
                continue
        if removed:
            _sync_directory(self.directory)

    def forget(self, paths: list[Path]) -> None:
        """Delete files once what they held is applied."""
        for path in paths:
            path.unlink(missing_ok=True)
        if paths:
            _sync_directory(self.directory)


def _make_directory(directory: Path) -> None:
    """Create ``directory`` and its missing parents durably: each one's parent is synced, and
    the parent of ``directory`` even when it exists (another writer may have just made it)."""
    missing = []
    at = directory
    while not at.is_dir():
        missing.append(at)
        at = at.parent
    for made in reversed(missing):
        made.mkdir(exist_ok=True)
        _sync_directory(made.parent)
    if not missing:
        _sync_directory(directory.parent)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
