"""The server's collector of the match tags the edge answered (``logs/matches.log``).

The edge writes one line per match tag it answered, ``<unix time> <nid> <cver> <gid>``
(``nginx.conf.in``, ``cookiematch_edge.lua``); no browser ID in the clear. ``EdgeMatches.step``
reads what was appended since its last step and decrypts each gid back to the browser ID
with the collector's own cipher (a step may run in a thread); it answers the ``(nid, browser
ID, time)`` of each line, which the server records as the Python path records a match tag it
answers (``BuyerMonitor.gid_issued``, the ``edge_redirect`` outcome), and the lines that do
not read (cut, unknown key version, a gid that does not verify: ``edge_unreadable``, never
dropped silently).

Its place (the file's inode and offset) is kept in ``logs/matches.offset``, written after
each step, so that a restarted server goes on where it stopped. It follows the log through a
rotation (the old file is read to its end, then the new one from its start) and a truncation
(read again from the start). One server worker collects: the one that holds
``logs/matches.lock``; the others try to take it at each step.
"""

from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cookiematch.edge.layout import COLLECTOR_LOCK, COLLECTOR_STATE, MATCHES_LOG
from cookiematch.errors import InvalidUserId
from cookiematch.formats import ID_PATTERN
from cookiematch.protocol.userid import UserIdCipher

__all__ = ["EdgeMatches", "Read"]

_NID = re.compile(ID_PATTERN)
MAX_BYTES_PER_STEP = 1 << 20
"""What one step reads at most (the rest waits for the next step)."""


@dataclass(frozen=True, slots=True)
class Read:
    """What one step read: the match tags (nid, browser ID, unix time), the nids of the
    lines that did not read ("" when not even that reads), and whether more is waiting."""

    matches: list[tuple[str, bytes, int]]
    unreadable: list[str]
    more: bool = False


_NOTHING = Read([], [])


class EdgeMatches:
    """Tails an edge directory's matches log."""

    def __init__(self, directory: Path, cipher: UserIdCipher) -> None:
        self._log = directory / MATCHES_LOG
        self._state = directory / COLLECTOR_STATE
        self._lock_path = directory / COLLECTOR_LOCK
        self._cipher = cipher
        self._lock: int | None = None
        self._file: IO[bytes] | None = None
        self._offset = 0
        self._rotated = False  # the log was renamed: the open file is read to its end first
        self._saved_place = (-1, -1)

    def step(self) -> Read:
        """What was appended since the last step (blocking file I/O and decryption)."""
        if not self._locked():
            return _NOTHING
        if self._file is None and not self._open():
            return _NOTHING
        assert self._file is not None
        self._file.seek(self._offset)
        data = self._file.read(MAX_BYTES_PER_STEP)
        end = data.rfind(b"\n") + 1  # a line being written waits for the next step
        read = Read([], [], more=len(data) == MAX_BYTES_PER_STEP)
        for line in data[:end].splitlines():
            self._read_line(line, read)
        self._offset += end
        if not data and self._rotated:  # the renamed file had nothing more: on to the new
            self._file.close()
            self._file, self._rotated = None, False
            if self._open_new():
                self._offset = 0
                return self.step()
        elif len(data) < MAX_BYTES_PER_STEP:
            self._follow()
        self._save()
        return read

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None

    def _locked(self) -> bool:
        if self._lock is None:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._lock = fd
        return True

    def _open(self) -> bool:
        """Open the log at the saved place (the start for a file not seen before)."""
        try:
            self._file = self._log.open("rb")
        except FileNotFoundError:
            return False
        inode = os.fstat(self._file.fileno()).st_ino
        saved_inode, saved_offset = self._saved()
        self._offset = saved_offset if saved_inode == inode else 0
        if self._offset > os.fstat(self._file.fileno()).st_size:
            self._offset = 0  # truncated while the server was away
        return True

    def _follow(self) -> None:
        """At the end of the open file: note a rotation (the next step that finds nothing
        more in the renamed file moves on to the new one), or start again at a truncated
        log's start."""
        assert self._file is not None
        mine = os.fstat(self._file.fileno())
        try:
            current = self._log.stat()
        except FileNotFoundError:
            return  # rotated, the new file not created yet: stay on the old one
        if current.st_ino != mine.st_ino:
            self._rotated = True
        elif mine.st_size < self._offset:
            self._offset = 0

    def _open_new(self) -> bool:
        try:
            self._file = self._log.open("rb")
        except FileNotFoundError:
            return False
        return True

    def _read_line(self, line: bytes, read: Read) -> None:
        fields = line.split(b" ")
        nid = ""
        try:
            when, nid, cver, gid = (f.decode("ascii") for f in fields)
            browser_id = self._cipher.decrypt(gid, nid, int(cver))
            at = int(float(when))
        except (ValueError, InvalidUserId):  # UnicodeDecodeError is a ValueError
            read.unreadable.append(nid if _NID.fullmatch(nid) else "")
            return
        read.matches.append((nid, browser_id, at))

    def _saved(self) -> tuple[int, int]:
        try:
            inode, offset = self._state.read_text().split()
            return int(inode), int(offset)
        except (FileNotFoundError, ValueError):
            return -1, 0

    def _save(self) -> None:
        inode = os.fstat(self._file.fileno()).st_ino if self._file is not None else -1
        if (inode, self._offset) == self._saved_place:
            return
        self._saved_place = (inode, self._offset)
        tmp = self._state.with_name(self._state.name + ".tmp")
        tmp.write_text(f"{inode} {self._offset}\n")
        os.replace(tmp, self._state)
