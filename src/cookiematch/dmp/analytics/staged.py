"""The engine owns the profiles' traits: staged updates applied to it, and a browser's online
parts joined to the traits the engine holds.

The online writers stage what records do to profiles (``dmp/traits/staging.py``); every engine
job applies the staged files first, oldest first (``apply_staged``), ``APPLY_UPDATES`` updates
at a time, through the engine's ``merge_staged``: the updates merged in order as the key-value
store's writes would (an attribute set lives its trait's TTL from the update's time, a removal
deletes, events are kept by (name, ts), lapse at ``TraitCatalog.event_expiry`` and are cut to
the newest ``max_events_per_name`` of each name). DuckDB merges in SQL (``staged_sql.py``);
Spark reads the rows it holds of each browser, merges them here (``merge_in_python``,
``apply_updates``) and replaces the profiles. The files are then deleted (applying one again
changes nothing). A file that does not decode is moved to the staging directory's ``bad/``
and logged; the job goes on with the others. An erasure staged (``dmp/subjects.py``) drops the
browser's traits and every update staged before it; the refresh then removes the browser,
which the store holds nothing of any more.

The refresh reads the online parts of a changed browser from the key-value store (syncs,
exposures, consent marks, memberships, in-band data) and keeps the engine's traits
(``with_traits``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import msgspec

from cookiematch.dmp.analytics.engine import AnalyticsEngine
from cookiematch.dmp.analytics.rows import AttributeRow, EventRow, ProfileRows
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.dmp.traits.staging import StagedUpdate, TraitStaging, decode

log = logging.getLogger(__name__)

APPLY_UPDATES = 200_000
"""Staged updates read and applied at a time (whole files), in one transaction."""


def _later(a: float | None, b: float | None) -> float | None:
    """The later of two lapse times (None: never)."""
    return None if a is None or b is None else max(a, b)


def traits_lapse(profile: ProfileRows) -> float | None:
    """When the last of a profile's traits lapses (0.0: it has none; None: never)."""
    last: float | None = 0.0
    for attribute in profile.attributes.values():
        last = _later(last, attribute.expires_at)
    for event in profile.events:
        last = _later(last, event.expires_at)
    return last


def with_traits(online: ProfileRows, held: ProfileRows | None) -> ProfileRows:
    """``online`` (read from the key-value store, no traits) with the traits of ``held`` (the
    engine's rows of the same browser); it lapses with the last of both."""
    if held is None:
        return online
    return ProfileRows(
        online.dmp_uid,
        _later(online.expires_at, traits_lapse(held)),
        held.attributes,
        held.events,
        online.exposures,
        online.syncs,
        online.consent,
        online.memberships,
    )


def with_stored_traits(stored: ProfileRows, held: ProfileRows | None) -> ProfileRows:
    """``stored`` (read from the key-value store with its ``t`` map, written before the engine
    owned the traits) with the traits of ``held`` (the engine's) added: an attribute the
    engine holds wins, events are kept by (name, ts)."""
    if held is None:
        return stored
    attributes = {**stored.attributes, **held.attributes}
    events = {(e.name, e.ts): e for e in (*stored.events, *held.events)}
    joined = ProfileRows(
        stored.dmp_uid, stored.expires_at, attributes, tuple(events.values()),
        stored.exposures, stored.syncs, stored.consent, stored.memberships,
    )  # fmt: skip
    return with_traits(joined, joined)  # it lapses with the last of both


def apply_updates(
    held: ProfileRows | None,
    dmp_uid: str,
    updates: Sequence[StagedUpdate],
    catalog: TraitCatalog,
) -> ProfileRows:
    """``held`` (None: a browser the engine does not know) after ``updates``, in order."""
    base = held if held is not None else ProfileRows(dmp_uid, 0.0)
    attributes = dict(base.attributes)
    events = {(e.name, e.ts): e for e in base.events}
    for update in updates:
        if update.erase:
            attributes.clear()
            events.clear()
            continue
        for name in update.remove:
            attributes.pop(name, None)
        for name, value in update.attributes.items():
            ttl = catalog.attribute_ttl_of(name)
            attributes[name] = AttributeRow(value, update.at, update.at + ttl)
        for name, ts in update.events:
            expires_at = catalog.event_expiry(name, ts)
            found = events.get((name, float(ts)))
            if found is None or (found.expires_at is not None and found.expires_at < expires_at):
                events[(name, float(ts))] = EventRow(name, float(ts), expires_at)
    by_name: dict[str, list[EventRow]] = {}
    for event in events.values():
        by_name.setdefault(event.name, []).append(event)
    limit = catalog.max_events_per_name
    kept = [
        event
        for name in sorted(by_name)
        for event in sorted(by_name[name], key=lambda e: e.ts, reverse=True)[:limit]
    ]
    profile = ProfileRows(
        dmp_uid, base.expires_at, attributes, tuple(kept), base.exposures, base.syncs,
        base.consent, base.memberships,
    )  # fmt: skip
    return ProfileRows(
        dmp_uid, _later(base.expires_at, traits_lapse(profile)), attributes, tuple(kept),
        base.exposures, base.syncs, base.consent, base.memberships,
    )  # fmt: skip


async def apply_staged(
    staging: TraitStaging, engine: AnalyticsEngine, catalog: TraitCatalog
) -> int:
    """Apply every staged file to ``engine``, oldest first, then delete it; return how many
    updates were applied."""
    applied = 0
    files = await asyncio.to_thread(staging.files)
    while files:
        taken: list[bytes] = []
        done = []
        count = 0
        while files and count < APPLY_UPDATES:
            path = files.pop(0)
            body = await asyncio.to_thread(path.read_bytes)
            try:
                count += len(decode(body))
            except msgspec.DecodeError as exc:  # ValidationError too
                moved = await asyncio.to_thread(staging.set_aside, path)
                log.error("a staged trait file does not decode (%s): moved to %s", exc, moved)
                continue
            taken.append(body)
            done.append(path)
        await asyncio.to_thread(engine.merge_staged, taken, catalog)
        await asyncio.to_thread(staging.forget, done)
        applied += count
    return applied


def merge_in_python(engine: AnalyticsEngine, files: Sequence[bytes], catalog: TraitCatalog) -> None:
    """Apply staged files (their contents, in staging order) to ``engine`` through its
    profiles: the rows held of each browser read, merged (``apply_updates``), the profiles
    replaced."""
    by_uid: dict[str, list[StagedUpdate]] = {}
    for body in files:
        for update in decode(body):
            by_uid.setdefault(update.dmp_uid, []).append(update)
    uids = sorted(by_uid)
    held = {p.dmp_uid: p for p in engine.profiles(uids)}
    engine.replace([apply_updates(held.get(uid), uid, by_uid[uid], catalog) for uid in uids])
