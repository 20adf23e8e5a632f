"""Keeping memberships current: incrementally when profiles change, and by a full recompute.

- ``profiles_changed(uids)``: the ingestion calls it (its ``on_profile_changed`` callbacks)
  with the browsers it just wrote; each is re-read, evaluated and its change written.
- ``recompute()``: scans every profile (with its stored memberships, in the same pass),
  writes only what changed (and the memberships still held that are due for a fresh
  lifetime, ``Memberships.due``), counts segment sizes, and stores a theta sketch of every
  segment and impression-pixel audience for the overlap report. The server runs it on a
  schedule (``schedule.py``): a rule with ``within_days`` stops holding as time passes, with no
  ingestion to notice it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

from cookiematch.clock import Clock
from cookiematch.dmp import keys
from cookiematch.dmp.overlap import SketchAudiences, audiences_of
from cookiematch.dmp.segments.membership import Change, Memberships, diff
from cookiematch.dmp.segments.model import Segment, evaluate
from cookiematch.dmp.segments.source import ProfileSource
from cookiematch.storage.base import Store

Progress = Callable[[int], None]

YIELD_EVERY = 256
"""Profiles evaluated between two yields to the event loop during a recompute."""
RECOMPUTE_BATCH = 50_000
"""Membership changes a recompute writes at a time (one ``hset_many`` of the browsers' maps)."""
PROGRESS_EVERY = 2000
"""Profiles between two calls of a recompute's ``progress``."""


class RecomputeReport(msgspec.Struct, frozen=True):
    """What a full recompute did."""

    at: float
    profiles: int
    joined: int
    left: int
    sizes: dict[str, int]
    seconds: float
    sketches: list[str] = msgspec.field(default_factory=list)
    refreshed: int = 0  # memberships still held, rewritten with a fresh lifetime


@dataclass
class _Tally:
    profiles: int = 0
    joined: int = 0
    left: int = 0
    refreshed: int = 0
    sizes: dict[str, int] = field(default_factory=dict)


class SegmentUpdater:
    """Evaluates the configured segments against profiles and writes the differences."""

    def __init__(
        self,
        store: Store,
        segments: Sequence[Segment],
        source: ProfileSource,
        *,
        memberships: Memberships | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self.segments = tuple(segments)
        self._source = source
        self._clock = clock
        self.memberships = memberships or Memberships(store)

    async def profiles_changed(self, dmp_uids: Iterable[str]) -> list[Change]:
        """Re-evaluate these browsers now; return the changes written (empty ones left out)."""
        uids = sorted(set(dmp_uids))
        if not uids:
            return []
        now = self._clock()
        snapshots, stored = await asyncio.gather(
            self._source.snapshots(uids, now),
            self.memberships.of_many(uids),
        )
        changes = [
            diff(uid, before, evaluate(self.segments, snap, now), now)
            for uid, snap, before in zip(uids, snapshots, stored, strict=True)
        ]
        changes = [c for c in changes if not c.empty]
        if changes:
            await self.memberships.apply(changes)
        return changes

    async def recompute(
        self,
        *,
        batch: int = RECOMPUTE_BATCH,
        sketches: bool = True,
        progress: Progress | None = None,
    ) -> RecomputeReport:
        """Evaluate every profile; write the changes in batches; store sketches and sizes."""
        started = time.perf_counter()
        now = self._clock()
        tally = _Tally(sizes={s.id: 0 for s in self.segments})
        audiences = SketchAudiences() if sketches else None
        pending: list[Change] = []
        async for scanned in self._source.scan(now):
            profile = scanned.snapshot
            member_of = evaluate(self.segments, profile, now)
            tally.profiles += 1
            for segment in member_of:
                tally.sizes[segment] += 1
            if audiences is not None:
                audiences.add(profile.dmp_uid, audiences_of(member_of, profile.exposures))
            due = self.memberships.due(scanned.entries)
            change = diff(profile.dmp_uid, scanned.segments, member_of, now, due)
            if not change.empty:
                tally.joined += len(change.joined)
                tally.left += len(change.left)
                tally.refreshed += len(change.refreshed)
                pending.append(change)
                if len(pending) >= batch:
                    await self.memberships.apply(pending)
                    pending = []
            if progress is not None and tally.profiles % PROGRESS_EVERY == 0:
                progress(PROGRESS_EVERY)
            if tally.profiles % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let a server's requests in between (scan pages are big)
        if pending:
            await self.memberships.apply(pending)
        if progress is not None:
            progress(tally.profiles % PROGRESS_EVERY)
        stored = await self._store_sketches(audiences) if audiences is not None else []
        report = RecomputeReport(
            at=now,
            profiles=tally.profiles,
            joined=tally.joined,
            left=tally.left,
            refreshed=tally.refreshed,
            sizes=tally.sizes,
            seconds=round(time.perf_counter() - started, 3),
            sketches=stored,
        )
        await self._store.set(keys.RECOMPUTE_KEY, msgspec.json.encode(report))
        return report

    async def _store_sketches(self, audiences: SketchAudiences) -> list[str]:
        serialized = audiences.serialized()
        await asyncio.gather(
            *(self._store.set(keys.sketch_key(name), raw) for name, raw in serialized.items())
        )
        return sorted(serialized)


async def last_recompute(store: Store) -> RecomputeReport | None:
    raw = await store.get(keys.RECOMPUTE_KEY)
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=RecomputeReport)
    except msgspec.DecodeError:
        return None


async def stored_sketches(store: Store) -> SketchAudiences | None:
    """The sketches of the last recompute, or None if there was none."""
    report = await last_recompute(store)
    if report is None or not report.sketches:
        return None
    raws = await store.get_many([keys.sketch_key(name) for name in report.sketches])
    found = {name: raw for name, raw in zip(report.sketches, raws, strict=True) if raw}
    return SketchAudiences.from_serialized(found)
