"""A full segment recompute on the analytics engine: the engine evaluates every segment in
SQL and diffs against the memberships it holds; only that diff (joins, leaves, and entries
due for a fresh lifetime, ``dmp/lifetimes.py``) is written to the key-value store, by the
same writer as the per-profile path (``Memberships.apply``); then the engine holds it.

The key-value store is written first: a crash in between leaves the engine behind, and the
next recompute writes the same diff again (every write of it is idempotent).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from cookiematch.dmp.analytics.engine import AnalyticsEngine
from cookiematch.dmp.segments.membership import Memberships
from cookiematch.dmp.segments.model import Segment
from cookiematch.dmp.segments.updater import RECOMPUTE_BATCH, RecomputeReport


async def recompute(
    engine: AnalyticsEngine,
    segments: Sequence[Segment],
    memberships: Memberships,
    now: float,
    *,
    batch: int = RECOMPUTE_BATCH,
) -> RecomputeReport:
    """Evaluate ``segments`` at ``now``; write the diff to the key-value store."""
    started = time.perf_counter()
    refresh_before = now - memberships.ttl / 2  # as lifetimes.due: under half a lifetime left
    diff = await asyncio.to_thread(engine.diff_memberships, segments, now, refresh_before)
    for changes in engine.changes(batch):
        await memberships.apply(changes)
    await asyncio.to_thread(engine.commit_memberships, now)
    return RecomputeReport(
        at=now,
        profiles=diff.profiles,
        joined=diff.joined,
        left=diff.left,
        refreshed=diff.refreshed,
        sizes=diff.sizes,
        seconds=round(time.perf_counter() - started, 3),
    )
