"""The profile look-up's traits when the analytics engine owns them: one browser's attributes
and ingested events as the engine holds them once refreshed (the staged updates applied, an
erased browser removed), live at now, each event name cut to its newest
``max_events_per_name`` (as ``ProfileReader.traits`` answers from the key-value store)."""

from __future__ import annotations

import time

from cookiematch.clock import Clock
from cookiematch.dmp.analytics.rows import snapshot_at
from cookiematch.dmp.analytics.runs import LOOKUP_WAIT, EngineRuns
from cookiematch.dmp.snapshot import AttributeValue
from cookiematch.errors import Busy, TryLater

RETRY_AFTER = 5  # seconds a busy look-up's answer says to wait


class EngineTraits:
    """``traits(dmp_uid)`` read from the engine (``Profiles``' traits source)."""

    def __init__(self, runs: EngineRuns, *, clock: Clock = time.time) -> None:
        self._runs = runs
        self._clock = clock

    async def traits(
        self, dmp_uid: str
    ) -> tuple[dict[str, AttributeValue], dict[str, tuple[float, ...]]]:
        """Attributes and event timestamps (newest first); ``TryLater`` when another job keeps
        the engine longer than ``LOOKUP_WAIT``."""
        try:
            held = await self._runs.traits(dmp_uid)
        except Busy as exc:
            raise TryLater(
                f"{exc}; the profile's traits are in the engine (waited {LOOKUP_WAIT:g} s)",
                retry_after=RETRY_AFTER,
            ) from exc
        if held is None:
            return {}, {}
        found = snapshot_at(held, self._clock(), self._runs.catalog.max_events_per_name)
        if found is None:
            return {}, {}
        return dict(found.attributes), dict(found.events)
