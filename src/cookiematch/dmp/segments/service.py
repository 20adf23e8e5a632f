"""The segment side of the DMP behind one object: updates, sizes (as the last recompute
counted them), overlap.

Built by the DMP composition root (``roots/dmp.py``), for the server and the command line,
from the configured segments; everything it does is a call on the store. Exports of segments
are ``dmp/segment_exports.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from cookiematch.clock import Clock
from cookiematch.dmp import keys
from cookiematch.dmp.overlap import (
    Audiences,
    CountedAudiences,
    ExactAudiences,
    PairOverlap,
    affinities,
    audiences_of,
    overlaps,
    segment_audience,
)
from cookiematch.dmp.segments.membership import Memberships
from cookiematch.dmp.segments.model import Segment
from cookiematch.dmp.segments.source import ProfileSource
from cookiematch.dmp.segments.updater import (
    RECOMPUTE_BATCH,
    Progress,
    RecomputeReport,
    SegmentUpdater,
    last_recompute,
    stored_sketches,
)
from cookiematch.errors import NotFound
from cookiematch.storage.base import Store

SEGMENT_PREFIX = segment_audience("")


class SegmentService:
    def __init__(
        self,
        store: Store,
        segments: Sequence[Segment],
        source: ProfileSource,
        *,
        memberships: Memberships | None = None,
        clock: Clock = time.time,
        counted_overlap: bool = False,
    ) -> None:
        """``counted_overlap``: segments' overlap is read from the figures the analytics
        engine's last recompute counted (``keys.OVERLAP_KEY``), in either mode."""
        self._store = store
        self._counted = counted_overlap
        self.segments: Mapping[str, Segment] = {s.id: s for s in segments}
        self._source = source
        self._clock = clock
        self.memberships = memberships or Memberships(store)
        self.updater = SegmentUpdater(
            store, segments, source, memberships=self.memberships, clock=clock
        )

    def replace(self, segments: Sequence[Segment]) -> None:
        """Evaluate ``segments`` from now on (the admin API changed them)."""
        self.segments = {s.id: s for s in segments}
        self.updater.segments = tuple(segments)

    async def profiles_changed(self, dmp_uids: Iterable[str]) -> None:
        """The ingestion's ``on_profile_changed`` callback: re-evaluate these browsers."""
        if self.segments:
            await self.updater.profiles_changed(dmp_uids)

    async def segments_of(self, dmp_uid: str) -> list[str]:
        return sorted(await self.memberships.of(dmp_uid))

    async def recompute(
        self,
        *,
        batch: int = RECOMPUTE_BATCH,
        sketches: bool = True,
        progress: Progress | None = None,
    ) -> RecomputeReport:
        return await self.updater.recompute(batch=batch, sketches=sketches, progress=progress)

    async def sizes(self) -> dict[str, int]:
        """Members of each segment as the last recompute counted them (on the analytics
        engine: its memberships); 0 for a segment no recompute counted yet."""
        report = await self.last_recompute()
        counted = {} if report is None else report.sizes
        return {segment: counted.get(segment, 0) for segment in self.segments}

    async def last_recompute(self) -> RecomputeReport | None:
        return await last_recompute(self._store)

    def segment(self, segment_id: str) -> Segment:
        found = self.segments.get(segment_id)
        if found is None:
            raise NotFound(f"no segment {segment_id!r}")
        return found

    async def audiences(self, *, exact: bool) -> Audiences:
        """Exact: one scan of every profile. Otherwise the sketches of the last recompute."""
        if not exact:
            sketches = await stored_sketches(self._store)
            if sketches is None:
                raise NotFound("no sketches yet: run `cookiematch dmp segments recompute`")
            return sketches
        found = ExactAudiences()
        now = self._clock()
        async for scanned in self._source.scan(now):
            profile = scanned.snapshot
            found.add(profile.dmp_uid, audiences_of(scanned.segments, profile.exposures))
        return found

    async def counted(self) -> CountedAudiences:
        """The segments' figures the analytics engine counted at its last recompute."""
        raw = await self._store.get(keys.OVERLAP_KEY)
        if raw is None:
            raise NotFound("no overlap yet: run `cookiematch dmp segments recompute`")
        try:
            return msgspec.json.decode(raw, type=CountedAudiences)
        except msgspec.DecodeError as exc:
            raise NotFound("the stored overlap does not read: recompute again") from exc

    async def overlap(
        self, names: Sequence[str], *, exact: bool, against: Sequence[str] | None = None
    ) -> tuple[Audiences, list[PairOverlap]]:
        """Pairs of ``names``; with one name and no ``against``: its affinity to every other
        (every other segment, when the figures are the engine's)."""
        segments_only = all(n.startswith(SEGMENT_PREFIX) for n in [*names, *(against or ())])
        audiences: Audiences
        if self._counted and segments_only:
            audiences = await self.counted()
        else:
            audiences = await self.audiences(exact=exact)
        if len(names) == 1 and not against:
            return audiences, affinities(audiences, names[0])
        return audiences, overlaps(audiences, names, against)
