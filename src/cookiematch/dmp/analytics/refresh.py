"""Keeping the engine's profiles current with the key-value store, which the online paths
write (pending records applied at sync, sync callbacks, impression pixels, consent marks, the
per-record ingestion).

Each online write marks the browser it changed (``dmp/change_marks.py``). A refresh at ``now``
reads the marks since the engine's last refresh (less ``SLACK`` for the writers' clocks),
reads those browsers' maps and replaces them in the engine (``engine.replace``; a browser with
no map left, erased or lapsed, is removed). The first refresh of an engine, or one whose last
refresh is older than the marks live, loads every profile instead (``load.load_profiles``).
The time of the refresh is then kept in the engine (``checkpoint``), so a new database file
starts with a full load. The marks of the minutes the next refresh will not read again (before
``now - SLACK``) are then deleted (``forget_minutes``): the store holds the marks of the
minutes since the last refresh, not of ``MARK_TTL``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from cookiematch.dmp.analytics.engine import AnalyticsEngine
from cookiematch.dmp.analytics.load import LoadContext, load_profiles, profile_rows
from cookiematch.dmp.analytics.rows import ProfileRows
from cookiematch.dmp.change_marks import MARK_TTL, changed_between, forget_minutes
from cookiematch.dmp.segments.source import PROFILE_PREFIX
from cookiematch.storage.base import FieldEntry, Store

LOADED_THROUGH = "profiles_loaded_through"
"""The checkpoint: when the last refresh started (every write marked before it is loaded)."""
SLACK = 120.0
"""Seconds read back before the last refresh: writers' clocks may lag the job's."""
SUFFIXES = ("t", "p", "e", "g", "s", "kv")
"""Every map of a profile (``dmp/keys.py``), as ``load.py`` reads them."""
READ_BATCH = 500  # browsers read at a time
PARALLEL = 64  # map reads in flight


@dataclass(frozen=True, slots=True)
class Refresh:
    """What a refresh did: a full load or not, and how many browsers it (re)loaded."""

    full: bool
    profiles: int
    removed: int = 0


async def read_profiles(
    store: Store, dmp_uids: Sequence[str], context: LoadContext
) -> tuple[list[ProfileRows], list[str]]:
    """The profiles of ``dmp_uids`` as the store holds them, and the uids it holds nothing for."""
    semaphore = asyncio.Semaphore(PARALLEL)

    async def entries(key: str) -> dict[str, FieldEntry]:
        async with semaphore:
            return await store.hgetall_entries(key)

    found: list[ProfileRows] = []
    gone: list[str] = []
    for start in range(0, len(dmp_uids), READ_BATCH):
        chunk = dmp_uids[start : start + READ_BATCH]
        maps = await asyncio.gather(
            *(entries(f"{PROFILE_PREFIX}{uid}}}:{s}") for uid in chunk for s in SUFFIXES)
        )
        width = len(SUFFIXES)
        for i, uid in enumerate(chunk):
            held = {
                suffix: fields
                for suffix, fields in zip(SUFFIXES, maps[i * width : (i + 1) * width], strict=True)
                if fields
            }
            if held:
                found.append(profile_rows(uid, held, context))
            else:
                gone.append(uid)
    return found, gone


async def refresh(store: Store, engine: AnalyticsEngine, context: LoadContext) -> Refresh:
    """Bring ``engine`` up to what ``store`` holds at ``context.now``."""
    now = context.now
    through = await asyncio.to_thread(engine.checkpoint, LOADED_THROUGH)
    if through is None or through < now - MARK_TTL + SLACK:
        loaded = await load_profiles(store, engine, context)
        await asyncio.to_thread(engine.set_checkpoint, LOADED_THROUGH, now)
        return Refresh(full=True, profiles=loaded)
    changed = sorted(await changed_between(store, through - SLACK, now))
    profiles, gone = await read_profiles(store, changed, context)
    await asyncio.to_thread(engine.replace, profiles)
    await asyncio.to_thread(engine.remove, gone)
    await asyncio.to_thread(engine.set_checkpoint, LOADED_THROUGH, now)
    await forget_minutes(store, through - SLACK, now - SLACK)
    return Refresh(full=False, profiles=len(profiles), removed=len(gone))
