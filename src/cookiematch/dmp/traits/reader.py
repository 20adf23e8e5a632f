"""The ``ProfileReader``: builds ``ProfileSnapshot`` values (the contract with segments) from a
browser's field maps: its syncs (``p``), impression-pixel tallies (``e``) and traits (``t``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace

from cookiematch.clock import Clock
from cookiematch.dmp import keys
from cookiematch.dmp.snapshot import AttributeValue, ProfileSnapshot, RawProfile, basic_snapshot
from cookiematch.dmp.traits.fields import SUFFIX, decode_traits
from cookiematch.storage.base import Store

MAPS_PER_READ = 2000  # field maps read per hgetall_many by ``snapshots``


class ProfileReader:
    """Builds ``ProfileSnapshot`` values from the store: one, or many at once.

    ``build`` is pure and has the shape of the segment part's snapshot builder, so
    ``StoredProfiles(store, reader.build, ProfileReader.SUFFIXES)`` scans full profiles.
    Each event name returns at most its newest ``max_events_per_name`` timestamps.
    """

    SUFFIXES = ("p", "e", SUFFIX)

    def __init__(
        self, store: Store, *, max_events_per_name: int = 50, clock: Clock = time.time
    ) -> None:
        self._store = store
        self._max_events = max_events_per_name
        self._clock = clock

    async def snapshot(self, dmp_uid: str, now: float | None = None) -> ProfileSnapshot:
        p, e, t = await asyncio.gather(
            *(self._store.hgetall(f"dmp:{{{dmp_uid}}}:{s}") for s in self.SUFFIXES)
        )
        return self.build(
            dmp_uid, {"p": p, "e": e, SUFFIX: t}, self._clock() if now is None else now
        )

    async def snapshots(self, dmp_uids: Sequence[str]) -> list[ProfileSnapshot]:
        """Snapshots in the order of ``dmp_uids`` (one ``hgetall_many`` per chunk of them)."""
        now = self._clock()
        found: list[ProfileSnapshot] = []
        width = len(self.SUFFIXES)
        step = MAPS_PER_READ // width
        for i in range(0, len(dmp_uids), step):
            chunk = dmp_uids[i : i + step]
            names = [f"dmp:{{{uid}}}:{s}" for uid in chunk for s in self.SUFFIXES]
            maps = await self._store.hgetall_many(names)
            for j, uid in enumerate(chunk):
                raw = dict(zip(self.SUFFIXES, maps[j * width : (j + 1) * width], strict=True))
                found.append(self.build(uid, raw, now))
        return found

    async def traits(
        self, dmp_uid: str
    ) -> tuple[dict[str, AttributeValue], dict[str, tuple[float, ...]]]:
        """Attributes and event timestamps (newest first) of one profile."""
        return decode_traits(await self._store.hgetall(keys.traits_key(dmp_uid)), self._max_events)

    def build(self, dmp_uid: str, raw: RawProfile, now: float) -> ProfileSnapshot:
        """A snapshot from a browser's raw field maps (expired fields are already left out)."""
        attributes, events = decode_traits(raw.get(SUFFIX, {}), self._max_events)
        return replace(basic_snapshot(dmp_uid, raw, now), attributes=attributes, events=events)
