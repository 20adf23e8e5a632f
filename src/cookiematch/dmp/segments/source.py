"""Where segment evaluation gets its ``ProfileSnapshot`` values from.

``ProfileSource`` is the contract: one browser's snapshot, and a scan of every profile (each
with the segments stored for it, read in the same pass). ``StoredProfiles`` reads a browser's
``dmp:{uid}:<suffix>`` maps and hands them to a pure builder: ``ProfileReader.build`` of
``dmp/traits/reader.py`` for full profiles (the server and the command line use it), or
``basic_snapshot`` of ``dmp/snapshot.py`` (syncs and impression-pixel exposures only).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cookiematch.dmp.snapshot import ProfileSnapshot, RawProfile, basic_snapshot
from cookiematch.storage.base import FieldEntry, Store

PROFILE_PREFIX = "dmp:{"
MEMBERSHIP_SUFFIX = "s"

Builder = Callable[[str, RawProfile, float], ProfileSnapshot]
"""Builds a snapshot from a browser's raw maps at ``now`` (pure)."""


@dataclass(frozen=True, slots=True)
class ScannedProfile:
    snapshot: ProfileSnapshot
    segments: frozenset[str]  # the memberships stored for it before this scan
    # those memberships as stored: segment -> (joining time, remaining lifetime); empty when
    # the source does not know them (nothing is then refreshed)
    entries: Mapping[str, FieldEntry] = field(default_factory=dict)


class ProfileSource(Protocol):
    async def snapshot(self, dmp_uid: str, now: float) -> ProfileSnapshot: ...

    async def snapshots(self, dmp_uids: Sequence[str], now: float) -> list[ProfileSnapshot]:
        """Snapshots in the order of ``dmp_uids`` (read in bulk where the source can)."""
        ...

    def scan(self, now: float) -> AsyncIterator[ScannedProfile]: ...


def split_profile_key(key: str) -> tuple[str, str] | None:
    """``dmp:{uid}:suffix`` -> ``(uid, suffix)``; None for other keys."""
    if not key.startswith(PROFILE_PREFIX):
        return None
    uid, sep, suffix = key[len(PROFILE_PREFIX) :].rpartition("}:")
    return (uid, suffix) if sep else None


class StoredProfiles:
    """A ``ProfileSource`` over the store's ``dmp:{uid}:*`` field maps."""

    def __init__(
        self, store: Store, build: Builder = basic_snapshot, suffixes: tuple[str, ...] = ("p", "e")
    ) -> None:
        self._store = store
        self._build = build
        self._suffixes = suffixes
        self.scan_batch = 2000  # field maps read per step of the scan

    async def snapshot(self, dmp_uid: str, now: float) -> ProfileSnapshot:
        maps = await asyncio.gather(
            *(self._store.hgetall(f"{PROFILE_PREFIX}{dmp_uid}}}:{s}") for s in self._suffixes)
        )
        return self._build(dmp_uid, dict(zip(self._suffixes, maps, strict=True)), now)

    async def snapshots(self, dmp_uids: Sequence[str], now: float) -> list[ProfileSnapshot]:
        """One ``hgetall_many`` of every suffix of every browser."""
        suffixes = self._suffixes
        names = [f"{PROFILE_PREFIX}{uid}}}:{s}" for uid in dmp_uids for s in suffixes]
        maps = await self._store.hgetall_many(names)
        width = len(suffixes)
        return [
            self._build(
                uid, dict(zip(suffixes, maps[i * width : (i + 1) * width], strict=True)), now
            )
            for i, uid in enumerate(dmp_uids)
        ]

    async def scan(self, now: float) -> AsyncIterator[ScannedProfile]:
        """Every browser with at least one field map, in key order (its maps are adjacent)."""
        current: str | None = None
        raw: dict[str, Mapping[str, bytes]] = {}
        entries: Mapping[str, FieldEntry] = {}
        async for key, fields in self._store.scan_maps(PROFILE_PREFIX, batch=self.scan_batch):
            parts = split_profile_key(key)
            if parts is None:
                continue
            uid, suffix = parts
            if uid != current:
                if current is not None:
                    yield self._scanned(current, raw, entries, now)
                current, raw, entries = uid, {}, {}
            raw[suffix] = {f: value for f, (value, _) in fields.items()}
            if suffix == MEMBERSHIP_SUFFIX:
                entries = fields
        if current is not None:
            yield self._scanned(current, raw, entries, now)

    def _scanned(
        self, uid: str, raw: RawProfile, entries: Mapping[str, FieldEntry], now: float
    ) -> ScannedProfile:
        stored = frozenset(raw.get(MEMBERSHIP_SUFFIX, {}))
        return ScannedProfile(self._build(uid, raw, now), stored, entries)
