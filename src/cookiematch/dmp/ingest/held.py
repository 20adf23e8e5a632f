"""Records merged by profile before they are written, in memory and in sorted runs on disk.

A store pays per profile written, not per record, and SQLite rewrites every page a
transaction touches: a file's records are therefore merged by profile first, so each profile
is written once per ingestion. ``HeldProfiles`` keeps up to ``limit`` merged profiles in
memory; beyond that it writes them, sorted by DMP uid, to a run file (a scratch directory of
its own, under ``TMPDIR``) and starts again. ``drain`` merges the runs and what is in memory
by uid, the updates of one profile in the order they were held (later records win), and hands
them out in chunks in uid order (the order of the store keys ``dmp:{uid}:t`` but for uids
that are prefixes of others), so each chunk touches its own part of the table.

A run file is a sequence of blocks: a 4-byte big-endian length, then a MessagePack array of
``[dmp uid, attributes, removed names, events]``.
"""

from __future__ import annotations

import heapq
import shutil
import struct
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from cookiematch.dmp.traits.writes import ProfileUpdate
from cookiematch.errors import ScratchError

BLOCK = 2000
"""Profiles per block of a run file (a drain holds one decoded block per run)."""
CHUNK = 25_000
"""Profiles per chunk handed out by ``drain`` (one store write each)."""
_LENGTH = struct.Struct(">I")


class _Spilled(msgspec.Struct, array_like=True, gc=False):
    uid: str
    attributes: dict[str, Any]
    remove: list[str]
    events: list[tuple[str, int]]


_encode = msgspec.msgpack.Encoder().encode
_decode_block = msgspec.msgpack.Decoder(list[_Spilled]).decode

Entry = tuple[str, int, ProfileUpdate | _Spilled]
"""(DMP uid, source: runs from 0 in the order written, memory last, update): tuples compare
in C, by uid then source, never by update (a source holds a uid once)."""


class HeldProfiles:
    """Merged profile updates of one partner's records, spilled to disk beyond ``limit``."""

    def __init__(self, partner_id: str, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.partner_id = partner_id
        self.limit = limit
        self.updates: dict[str, ProfileUpdate] = {}  # by DMP uid, in memory
        self.spilled = 0  # profiles written to run files (a profile in several runs: each)
        self._runs: list[Path] = []
        self._scratch: Path | None = None

    def __len__(self) -> int:
        """Profiles held in memory."""
        return len(self.updates)

    @property
    def empty(self) -> bool:
        return not self.updates and not self._runs

    def update_of(self, dmp_uid: str) -> ProfileUpdate:
        """The held update of ``dmp_uid`` (new if none), to merge a record into."""
        update = self.updates.get(dmp_uid)
        if update is None:
            update = self.updates[dmp_uid] = ProfileUpdate(self.partner_id)
        return update

    def spill_if_full(self) -> None:
        """Write the profiles in memory to a new run file once there are ``limit`` of them."""
        if len(self.updates) < self.limit:
            return
        updates = self.updates
        uids = sorted(updates)  # strings: much faster to sort than (uid, update) pairs
        try:
            if self._scratch is None:
                self._scratch = Path(tempfile.mkdtemp(prefix="cookiematch-held-"))
            path = self._scratch / f"run-{len(self._runs)}.msgpack"
            with path.open("wb") as out:
                for start in range(0, len(uids), BLOCK):
                    block = [(uid, updates[uid]) for uid in uids[start : start + BLOCK]]
                    raw = _encode([(uid, u.attributes, u.remove, u.events) for uid, u in block])
                    out.write(_LENGTH.pack(len(raw)))
                    out.write(raw)
        except OSError as exc:
            raise ScratchError(
                f"cannot write held profiles under {self._scratch or tempfile.gettempdir()}: "
                f"{exc.strerror or exc} (point TMPDIR at a disk with room, or hold more "
                "profiles in memory: --hold-profiles)"
            ) from exc
        self._runs.append(path)
        self.spilled += len(self.updates)
        self.updates = {}

    def drain(self, chunk: int = CHUNK) -> Iterator[dict[str, ProfileUpdate]]:
        """Every held profile once, merged, in uid order, ``chunk`` at a time; the runs and
        the memory are emptied as they are read (``close`` removes the files)."""
        sources: list[Iterable[Entry]] = [_read_run(i, path) for i, path in enumerate(self._runs)]
        last = len(sources)
        updates, self.updates = self.updates, {}
        sources.append([(uid, last, updates[uid]) for uid in sorted(updates)])
        found: dict[str, ProfileUpdate] = {}
        last_uid = ""  # no uid yet (DMP uids are never empty)
        parts: list[ProfileUpdate | _Spilled] = []
        for uid, _, part in heapq.merge(*sources):
            if uid != last_uid:
                if parts:
                    found[last_uid] = self._merged(parts)
                    if len(found) >= chunk:
                        yield found
                        found = {}
                last_uid, parts = uid, []
            parts.append(part)  # in the order held: runs oldest first, memory last
        if parts:
            found[last_uid] = self._merged(parts)
        if found:
            yield found
        self.close()

    def _merged(self, parts: list[ProfileUpdate | _Spilled]) -> ProfileUpdate:
        first = parts[0]
        if len(parts) == 1 and isinstance(first, ProfileUpdate):
            return first
        update = ProfileUpdate(self.partner_id)
        for part in parts:
            update.merge(part.attributes, part.remove, part.events)
        return update

    def close(self) -> None:
        """Remove the run files (what they held is gone)."""
        self._runs = []
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def _read_run(source: int, path: Path) -> Iterator[Entry]:
    try:
        with path.open("rb") as run:
            while header := run.read(_LENGTH.size):
                (size,) = _LENGTH.unpack(header)
                raw = run.read(size)
                if len(raw) != size:
                    raise ScratchError(f"held profiles: {path} is truncated")
                for spilled in _decode_block(raw):
                    yield spilled.uid, source, spilled
    except (OSError, struct.error, msgspec.DecodeError) as exc:
        raise ScratchError(f"cannot read held profiles from {path}: {exc}") from exc
