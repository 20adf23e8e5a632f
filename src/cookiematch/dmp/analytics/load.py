"""Loading the key-value store's profiles into the analytics engine: one scan of every
browser's ``dmp:{uid}:*`` field maps (``segments/source.py``'s order), each field's remaining
lifetime turned into the time it lapses. What the engine then holds is what the store held
(the seed of the migration of an existing DMP).

Read per map suffix (``dmp/keys.py``): ``t`` attributes and ingested events, ``p`` syncs, ``e``
impression-pixel tallies, ``g`` consent marks, ``s`` segment memberships; every map (in-band
data ``kv`` too) counts toward when the profile itself lapses. Fields that do not decode are
left out, as the profile reader leaves them out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import msgspec

from cookiematch.dmp.analytics.engine import AnalyticsEngine
from cookiematch.dmp.analytics.rows import (
    AttributeRow,
    ConsentRow,
    EventRow,
    ExposureRow,
    MembershipRow,
    ProfileRows,
    SyncRow,
)
from cookiematch.dmp.analytics.staged import with_stored_traits
from cookiematch.dmp.consent import decode_mark
from cookiematch.dmp.events import ImpressionEvent, decode_tally
from cookiematch.dmp.matches import PartnerMatch
from cookiematch.dmp.segments.membership import decode_time
from cookiematch.dmp.segments.source import PROFILE_PREFIX, split_profile_key
from cookiematch.dmp.traits.fields import (
    ATTRIBUTE,
    decode_attribute,
    split_event_field,
)
from cookiematch.dmp.traits.fields import SUFFIX as TRAITS
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.storage.base import FieldEntry, Store

LOAD_BATCH = 5000  # profiles appended to the engine at a time
SCAN_BATCH = 2000  # field maps read per step of the scan

_match = msgspec.json.Decoder(PartnerMatch)


@dataclass(frozen=True, slots=True)
class LoadContext:
    """What turns stored fields into rows: ``now`` (remaining lifetimes are relative to
    it), the trait catalog (an attribute's lifetime gives back when it was set) and the
    membership lifetime (an entry's remaining lifetime gives back when it was written)."""

    now: float
    catalog: TraitCatalog
    membership_ttl: float


def profile_rows(
    dmp_uid: str, maps: Mapping[str, Mapping[str, FieldEntry]], context: LoadContext
) -> ProfileRows:
    """A browser's rows from its field maps (suffix -> field -> (value, remaining))."""
    now = context.now

    def lapses(remaining: float | None) -> float | None:
        return None if remaining is None else now + remaining

    attributes: dict[str, AttributeRow] = {}
    events: list[EventRow] = []
    for field, (raw, remaining) in maps.get(TRAITS, {}).items():
        expires_at = lapses(remaining)
        if field.startswith(ATTRIBUTE):
            value = decode_attribute(raw)
            if value is not None:
                name = field[len(ATTRIBUTE) :]
                set_at = None
                if expires_at is not None:
                    set_at = expires_at - context.catalog.attribute_ttl_of(name)
                attributes[name] = AttributeRow(value, set_at, expires_at)
        elif (stamped := split_event_field(field)) is not None:
            events.append(EventRow(stamped[0], stamped[1], expires_at))
    syncs: dict[str, SyncRow] = {}
    for partner, (raw, remaining) in maps.get("p", {}).items():
        try:
            match = _match.decode(raw)
        except msgspec.DecodeError:
            continue
        syncs[partner] = SyncRow(match.uid, match.at, lapses(remaining))
    exposures: list[ExposureRow] = []
    for field, (raw, remaining) in maps.get("e", {}).items():
        shown, tally = ImpressionEvent.from_field(field), decode_tally(raw)
        if shown is not None and tally is not None:
            exposures.append(
                ExposureRow(
                    shown.event.value, shown.campaign, tally.count, shown.site,
                    shown.creative, tally.first, tally.last, lapses(remaining),
                )
            )  # fmt: skip
    consent: dict[str, ConsentRow] = {}
    for party, (raw, remaining) in maps.get("g", {}).items():
        mark = decode_mark(raw)
        if mark is not None:
            consent[party] = ConsentRow(
                mark.at, mark.tc_last_updated, mark.refused, lapses(remaining)
            )
    memberships: dict[str, MembershipRow] = {}
    for segment, (raw, remaining) in maps.get("s", {}).items():
        written_at = None if remaining is None else now + remaining - context.membership_ttl
        memberships[segment] = MembershipRow(decode_time(raw), written_at)
    return ProfileRows(
        dmp_uid,
        _last(maps, now),
        attributes,
        tuple(events),
        tuple(exposures),
        syncs,
        consent,
        memberships,
    )


def _last(maps: Mapping[str, Mapping[str, FieldEntry]], now: float) -> float | None:
    """When the last field of every map lapses; None when one never does."""
    remaining = [left for fields in maps.values() for _, left in fields.values()]
    if not remaining or any(left is None for left in remaining):
        return None
    return now + max(left for left in remaining if left is not None)


async def scan_profiles(
    store: Store, context: LoadContext, *, batch: int = LOAD_BATCH, traits: bool = True
) -> AsyncIterator[list[ProfileRows]]:
    """Every profile of ``store``, ``batch`` at a time (``traits``: with their ``t`` maps,
    else without: the engine owns them; a browser with a ``t`` map alone is still there)."""
    pending: list[ProfileRows] = []
    current: str | None = None
    maps: dict[str, Mapping[str, FieldEntry]] = {}
    async for key, fields in store.scan_maps(PROFILE_PREFIX, batch=SCAN_BATCH):
        parts = split_profile_key(key)
        if parts is None:
            continue
        uid, suffix = parts
        if uid != current:
            if current is not None:
                pending.append(profile_rows(current, maps, context))
            current, maps = uid, {}
            if len(pending) >= batch:
                yield pending
                pending = []
        if traits or suffix != TRAITS:
            maps[suffix] = fields
    if current is not None:
        pending.append(profile_rows(current, maps, context))
    if pending:
        yield pending


async def load_profiles(
    store: Store,
    engine: AnalyticsEngine,
    context: LoadContext,
    *,
    batch: int = LOAD_BATCH,
    keep: bool = False,
) -> int:
    """Load every profile of ``store`` into ``engine``; return how many. ``keep``: the
    engine's profiles are kept, a stored one replacing its own with the traits of both (the
    engine's winning: the store's ``t`` maps are those written before the engine owned the
    traits, ``staged.with_stored_traits``), else the engine is cleared first."""
    if not keep:
        await asyncio.to_thread(engine.clear)
    loaded = 0
    async for profiles in scan_profiles(store, context, batch=batch):
        if keep:
            uids = [p.dmp_uid for p in profiles]
            held = {p.dmp_uid: p for p in await asyncio.to_thread(engine.profiles, uids)}
            joined = [with_stored_traits(p, held.get(p.dmp_uid)) for p in profiles]
            await asyncio.to_thread(engine.replace, joined)
        else:
            await asyncio.to_thread(engine.append, profiles)
        loaded += len(profiles)
    return loaded
