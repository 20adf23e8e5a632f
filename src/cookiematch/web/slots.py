"""One worker's metric values in a shared-memory file, and the reading of every worker's.

Each worker process writes only its own file (``<pid>.slots`` in the directory ``serve``
creates and names in ``COOKIEMATCH_METRICS_DIR``), so an update needs no lock: it is a float
added in place through a ``memoryview`` over the ``mmap``. Whichever worker answers a scrape
reads every file of the directory and adds them up (``web/counters.py``).

Layout (little-endian, every field 8-byte aligned)::

    header   u32 magic, u32 version, u64 used (bytes of the file in use, header included)
    entry    u32 key length, u32 value count, key (UTF-8 JSON, zero-padded to 8), f64 values

A new series is appended: its key and zeroed values are written first, then ``used`` moves
past it in one aligned 8-byte store, so a reader never sees half an entry. The file is sparse
and never grows (``capacity``); a series that does not fit writes into a scratch area that is
never read, and is logged once.

A worker holds an exclusive ``flock`` on its file while it lives; a reader that can take a
shared lock knows the writer is gone (its counters still count, its gauges no longer do).
Without a directory (a process outside ``serve``, tests) the values live in anonymous memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_CAPACITY",
    "METRICS_DIR_ENV",
    "SlotFile",
    "WorkerValues",
    "read_directory",
    "workers_directory",
]

log = logging.getLogger(__name__)

METRICS_DIR_ENV = "COOKIEMATCH_METRICS_DIR"
DEFAULT_CAPACITY = 16 * 1024 * 1024  # sparse: only the pages written take memory
SUFFIX = ".slots"
PREFIX = "cookiematch-metrics-"
OWNER = ".owner"  # locked by the server process while the directory is in use
_MAGIC = 0x534D_4B43  # "CKMS"
_VERSION = 1
_HEADER = struct.Struct("<IIQ")
_ENTRY = struct.Struct("<II")
_SCRATCH_VALUES = 4096  # where the values of series that did not fit go


@dataclass(frozen=True, slots=True)
class WorkerValues:
    """One worker's series as read from its file: key -> values, and whether it lives."""

    pid: int
    alive: bool
    series: list[tuple[bytes, tuple[float, ...]]]


def _pad(n: int) -> int:
    return (n + 7) & ~7


class SlotFile:
    """The series of this process: ``allocate`` a key once, then add to ``values[index]``."""

    def __init__(self, directory: str | None, capacity: int = DEFAULT_CAPACITY) -> None:
        self.pid = os.getpid()
        self.path: Path | None = None
        self._fd: int | None = None
        if directory is None:
            self._map = mmap.mmap(-1, capacity)
        else:
            # a new file per process, never truncating one: a worker that got the pid of a
            # dead one must not wipe the dead worker's counts (counters never go down)
            self.path = Path(directory) / f"{self.pid}-{os.urandom(4).hex()}{SUFFIX}"
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)  # held while this process lives
            os.ftruncate(fd, capacity)
            self._fd = fd
            self._map = mmap.mmap(fd, capacity)
        self._words = memoryview(self._map).cast("Q")
        self.values: memoryview[float] = memoryview(self._map).cast("d")
        self._limit = capacity - _SCRATCH_VALUES * 8
        self._scratch = self._limit // 8
        self._full_logged = False
        _HEADER.pack_into(self._map, 0, _MAGIC, _VERSION, _HEADER.size)
        self._used = _HEADER.size

    def allocate(self, key: bytes, count: int) -> int:
        """A new series of ``count`` zeroed values under ``key``: the index of its first."""
        size = _ENTRY.size + _pad(len(key)) + 8 * count
        start = self._used
        if start + size > self._limit or count > _SCRATCH_VALUES:
            if not self._full_logged:
                self._full_logged = True
                log.warning("metrics: the worker's file is full; new series are not exposed")
            return self._scratch
        _ENTRY.pack_into(self._map, start, len(key), count)
        self._map[start + _ENTRY.size : start + _ENTRY.size + len(key)] = key
        self._used = start + size
        self._words[1] = self._used  # publishes the entry (one aligned store)
        return (start + size) // 8 - count

    def series(self) -> list[tuple[bytes, tuple[float, ...]]]:
        """This process's series, read from memory."""
        return parse(self._map[: self._used])

    def close(self) -> None:
        self._words.release()
        self.values.release()
        self._map.close()
        if self._fd is not None:
            os.close(self._fd)  # the lock goes with it
            self._fd = None


def parse(data: bytes) -> list[tuple[bytes, tuple[float, ...]]]:
    """The entries of a file's bytes (header included), in order."""
    if len(data) < _HEADER.size:
        return []
    magic, version, used = _HEADER.unpack_from(data, 0)
    if magic != _MAGIC or version != _VERSION:
        return []
    end = min(used, len(data))
    found: list[tuple[bytes, tuple[float, ...]]] = []
    position = _HEADER.size
    while position + _ENTRY.size <= end:
        key_length, count = _ENTRY.unpack_from(data, position)
        values_at = position + _ENTRY.size + _pad(key_length)
        key = bytes(data[position + _ENTRY.size : position + _ENTRY.size + key_length])
        found.append((key, struct.unpack_from(f"<{count}d", data, values_at)))
        position = values_at + 8 * count
    return found


def _locked(path: Path) -> bool:
    """Does a live process hold ``path``'s lock?"""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _sweep(parent: str) -> None:
    """Remove the directories of servers that were killed before they could."""
    for directory in Path(parent).glob(f"{PREFIX}*"):
        owner = directory / OWNER
        try:
            if directory.stat().st_uid != os.getuid():
                continue  # another user's server: not ours to judge (nor readable)
            if owner.exists() and not _locked(owner):
                shutil.rmtree(directory, ignore_errors=True)
        except OSError:
            continue  # gone meanwhile, or not ours


@contextlib.contextmanager
def workers_directory() -> Iterator[str]:
    """A fresh directory for a server's worker files (on ``/dev/shm`` when there is one),
    named in ``COOKIEMATCH_METRICS_DIR`` for the workers while the server runs, removed after;
    those of killed servers are removed by the next one."""
    parent = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    _sweep(parent)
    directory = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    owner = os.open(Path(directory) / OWNER, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(owner, fcntl.LOCK_EX)
    previous = os.environ.get(METRICS_DIR_ENV)
    os.environ[METRICS_DIR_ENV] = directory
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(METRICS_DIR_ENV, None)
        else:
            os.environ[METRICS_DIR_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)
        os.close(owner)


def _read_other(path: Path) -> WorkerValues | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            alive = True
        else:
            alive = False
            fcntl.flock(fd, fcntl.LOCK_UN)
        header = os.pread(fd, _HEADER.size, 0)
        if len(header) < _HEADER.size:
            return None
        used = _HEADER.unpack(header)[2]
        data = os.pread(fd, used, 0)
    finally:
        os.close(fd)
    with contextlib.suppress(ValueError):
        pid = path.name.removesuffix(SUFFIX).partition("-")[0]  # <pid>-<random>.slots
        return WorkerValues(int(pid), alive, parse(data))
    return None


def read_directory(own: SlotFile) -> Iterator[WorkerValues]:
    """Every worker's series: this process's from memory, the others' from their files."""
    yield WorkerValues(own.pid, True, own.series())
    if own.path is None:
        return
    for path in sorted(own.path.parent.glob(f"*{SUFFIX}")):
        if path != own.path:
            values = _read_other(path)
            if values is not None:
                yield values
