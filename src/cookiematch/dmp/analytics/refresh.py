"""Keeping the engine's profiles current: the staged trait updates applied, then the online
parts re-read from the key-value store, which the online paths write (sync callbacks,
impression pixels, consent marks, erasure).

The engine owns the profiles' traits (attributes and ingested events): the online writers
stage their updates (``dmp/traits/staging.py``), which a refresh applies first
(``staged.apply_staged``). Each online write of the store marks the browser it changed
(``dmp/change_marks.py``). A refresh at ``now`` then reads the marks since the engine's last
refresh (less ``SLACK`` for the writers' clocks), reads those browsers' maps but their ``t``
and replaces their online parts in the engine, keeping its traits (``staged.with_traits``); a
browser with no map left (erased) is removed. The first refresh of an engine loads every
profile of the store, ``t`` maps included (those an existing DMP wrote before its engine owned
them: ``load.load_profiles``). One whose last refresh is older than the marks live, or
whose gap holds more mark maps than ``MAX_READ_NAMES`` (about two hours), reloads every
profile's online parts instead, keeping the engine's traits, and removes every browser the
store scan did not find (erased while its marks lapsed unread, or lapsed); the gap's marks
are left to lapse. The time of the refresh is then kept in the engine (``checkpoint``). The
marks of the minutes the next refresh will not read again (before ``now - SLACK``) are then
deleted (``forget_minutes``): the store holds the marks of the minutes since the last
refresh, not of ``MARK_TTL``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from cookiematch.dmp.analytics.engine import AnalyticsEngine
from cookiematch.dmp.analytics.load import (
    LoadContext,
    load_profiles,
    profile_rows,
    scan_profiles,
)
from cookiematch.dmp.analytics.rows import ProfileRows
from cookiematch.dmp.analytics.staged import apply_staged, with_traits
from cookiematch.dmp.change_marks import (
    MARK_TTL,
    MAX_READ_NAMES,
    changed_between,
    forget_minutes,
    mark_names,
)
from cookiematch.dmp.keys import PROFILE_MAPS
from cookiematch.dmp.segments.source import PROFILE_PREFIX
from cookiematch.dmp.traits.fields import SUFFIX as TRAITS
from cookiematch.dmp.traits.staging import TraitStaging
from cookiematch.storage.base import FieldEntry, Store

LOADED_THROUGH = "profiles_loaded_through"
"""The checkpoint: when the last refresh started (every write marked before it is loaded)."""
SLACK = 120.0
"""Seconds read back before the last refresh: writers' clocks may lag the job's."""
READ_BATCH = 500  # browsers read at a time
PARALLEL = 64  # map reads in flight


@dataclass(frozen=True, slots=True)
class Refresh:
    """What a refresh did: a full load or not, and how many browsers it (re)loaded."""

    full: bool
    profiles: int
    removed: int = 0
    staged: int = 0  # staged trait updates applied


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
            *(entries(f"{PROFILE_PREFIX}{uid}}}:{s}") for uid in chunk for s in PROFILE_MAPS)
        )
        width = len(PROFILE_MAPS)
        for i, uid in enumerate(chunk):
            held = {
                suffix: fields
                for suffix, fields in zip(
                    PROFILE_MAPS, maps[i * width : (i + 1) * width], strict=True
                )
                if fields
            }
            if held:  # a ``t`` map (written before the engine owned traits) only says so
                held.pop(TRAITS, None)
                found.append(profile_rows(uid, held, context))
            else:
                gone.append(uid)
    return found, gone


async def refresh(
    store: Store,
    engine: AnalyticsEngine,
    context: LoadContext,
    staging: TraitStaging | None = None,
) -> Refresh:
    """Bring ``engine`` up to what ``store`` (and ``staging``) holds at ``context.now``."""
    now = context.now
    through = await asyncio.to_thread(engine.checkpoint, LOADED_THROUGH)
    if through is None:  # a new engine: every profile of the store, then what was staged
        loaded = await load_profiles(store, engine, context)
        staged = await _apply(staging, engine, context)
        await asyncio.to_thread(engine.set_checkpoint, LOADED_THROUGH, now)
        return Refresh(full=True, profiles=loaded, staged=staged)
    staged = await _apply(staging, engine, context)
    if through < now - MARK_TTL + SLACK or mark_names(through - SLACK, now) > MAX_READ_NAMES:
        loaded, removed = await _reload_online(store, engine, context)
        await asyncio.to_thread(engine.set_checkpoint, LOADED_THROUGH, now)
        return Refresh(full=True, profiles=loaded, removed=removed, staged=staged)
    changed = sorted(await changed_between(store, through - SLACK, now))
    profiles, gone = await read_profiles(store, changed, context)
    await _replace_online(engine, profiles)
    await asyncio.to_thread(engine.remove, gone)
    await asyncio.to_thread(engine.set_checkpoint, LOADED_THROUGH, now)
    await forget_minutes(store, through - SLACK, now - SLACK)
    return Refresh(full=False, profiles=len(profiles), removed=len(gone), staged=staged)


async def _reload_online(
    store: Store, engine: AnalyticsEngine, context: LoadContext
) -> tuple[int, int]:
    """Re-read every profile's online parts, keeping the engine's traits, and remove every
    browser the store holds nothing of any more (erased, or lapsed, unmarked or with its marks
    unread); the profiles reloaded and removed."""
    loaded = 0
    found: set[str] = set()
    async for profiles in scan_profiles(store, context, traits=False):
        await _replace_online(engine, profiles)
        found.update(p.dmp_uid for p in profiles)
        loaded += len(profiles)
    held = await asyncio.to_thread(engine.profile_ids)
    gone = [uid for uid in held if uid not in found]
    await asyncio.to_thread(engine.remove, gone)
    return loaded, len(gone)


async def _apply(
    staging: TraitStaging | None, engine: AnalyticsEngine, context: LoadContext
) -> int:
    return 0 if staging is None else await apply_staged(staging, engine, context.catalog)


async def _replace_online(engine: AnalyticsEngine, profiles: Sequence[ProfileRows]) -> None:
    """Replace the online parts of ``profiles`` in ``engine``, keeping the traits it holds."""
    held = {
        p.dmp_uid: p
        for p in await asyncio.to_thread(engine.profiles, [p.dmp_uid for p in profiles])
    }
    joined = [with_traits(p, held.get(p.dmp_uid)) for p in profiles]
    await asyncio.to_thread(engine.replace, joined)
