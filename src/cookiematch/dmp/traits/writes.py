"""Trait writes: what ingested records do to profiles (``ProfileUpdate``), as store fields
(``TraitWrites``), written by the ``TraitStore`` (layout: ``fields.py``).

Setting an attribute overwrites it (set semantics), ``null`` or ``remove`` deletes it; an
event is a field per (name, ts), so duplicates collapse by construction. Each name is kept to
about its newest ``max_events_per_name`` (a write never adds more; a profile that got events
is read back and trimmed now and then, see ``TraitStore._due_for_trim``; readers return at most
that many). A batch is written with one ``hset_many``. Every write calls the
``on_profile_changed`` callbacks with the DMP uids it touched (segments subscribe there).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import msgspec

from cookiematch.clock import Clock
from cookiematch.dmp import keys
from cookiematch.dmp.change_marks import MARKING, ChangeMarks
from cookiematch.dmp.snapshot import AttributeValue
from cookiematch.dmp.traits.fields import ATTRIBUTE, EVENT, decode_traits, event_field
from cookiematch.dmp.traits.schema import EVENT_EXPIRY_STEP, TraitCatalog
from cookiematch.dmp.traits.staging import StagedUpdate, TraitStaging
from cookiematch.storage.base import Store

log = logging.getLogger(__name__)

CONCURRENCY = 2000  # store calls in flight per step
TRIM_CHUNK = 5000  # profiles read per hgetall_many when trimming
MAX_REMEMBERED = 10_000  # trait names whose field and TTL are remembered (then start over)
_NOTHING: frozenset[Any] = frozenset()

ProfileChanged = Callable[[list[str]], Awaitable[None]]
"""An ``on_profile_changed`` callback: called with the DMP uids a write touched."""


@dataclass(slots=True)
class ProfileUpdate:
    """What records do to one profile, merged in order (later wins).

    ``remove`` and ``events`` share one empty frozenset until a record needs them (an empty
    set costs 216 bytes, and ingestion holds hundreds of thousands of these).
    """

    partner: str
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    remove: AbstractSet[str] = _NOTHING
    events: AbstractSet[tuple[str, int]] = _NOTHING

    def merge(
        self,
        attributes: Mapping[str, AttributeValue | None],
        remove: Iterable[str],
        events: Iterable[tuple[str, int]],
    ) -> None:
        if remove or None in attributes.values():
            removed = set(self.remove)
            for name in remove:
                self.attributes.pop(name, None)
                removed.add(name)
            for name, value in attributes.items():
                if value is None:
                    self.attributes.pop(name, None)
                    removed.add(name)
                else:
                    removed.discard(name)
                    self.attributes[name] = value
            self.remove = removed or _NOTHING
        else:  # only values: set them all at once
            self.attributes.update(attributes)  # type: ignore[arg-type]
            if self.remove:
                self.remove = {name for name in self.remove if name not in attributes} or _NOTHING
        if events:
            if isinstance(self.events, set):
                self.events.update(events)
            else:
                self.events = set(events)


def _newest(events: list[tuple[str, int, float]], limit: int) -> Iterable[tuple[str, int, float]]:
    """``(name, ts, ttl)`` without those beyond the newest ``limit`` of their name."""
    if len(events) <= limit:
        return events
    by_name: dict[str, list[tuple[str, int, float]]] = {}
    for event in events:
        by_name.setdefault(event[0], []).append(event)
    return [
        event
        for found in by_name.values()
        for event in sorted(found, key=_by_time, reverse=True)[:limit]
    ]


def _by_time(event: tuple[str, int, float]) -> int:
    return event[1]


_encode = msgspec.json.encode


async def gather_bounded(
    coros: Iterable[Coroutine[Any, Any, Any]], width: int, *, queued: bool = False
) -> None:
    """Await every coroutine, at most ``width`` at a time (the store batches what is queued).

    ``queued``: the calls return once queued (``Durability.ASYNC`` writes), so awaiting them
    one by one costs less than concurrent tasks and keeps their order.
    """
    if queued:
        for coro in coros:
            await coro
        return
    pending: list[Coroutine[Any, Any, Any]] = []
    for coro in coros:
        pending.append(coro)
        if len(pending) >= width:
            await asyncio.gather(*pending)
            pending = []
    if pending:
        await asyncio.gather(*pending)


@dataclass(slots=True)
class TraitWrites:
    """A batch of profile updates as store fields (``TraitStore.prepare``)."""

    uids: list[str]  # the DMP uids updated
    writes: dict[str, dict[float, dict[str, bytes]]] = field(default_factory=dict)  # key, ttl
    removals: list[tuple[str, list[str]]] = field(default_factory=list)  # (key, fields)
    trims: dict[str, list[tuple[str, int, float]]] = field(default_factory=dict)  # new events
    expired: int = 0  # events already older than their TTL: left out
    staged: list[StagedUpdate] = field(default_factory=list)  # the engine's, when it owns traits


class TraitStore:
    """Writes profile updates; calls ``on_profile_changed`` after each write.

    ``staging``: the analytics engine owns the profiles' traits: updates are appended to its
    staging (``staging.py``), durably, instead of written to the ``t`` maps."""

    def __init__(
        self,
        store: Store,
        catalog: TraitCatalog,
        *,
        clock: Clock,
        on_profile_changed: Sequence[ProfileChanged] = (),
        rng: random.Random | None = None,
        marks: ChangeMarks = MARKING,
        staging: TraitStaging | None = None,
    ) -> None:
        self._store = store
        self.staging = staging
        self._marks = marks
        self._catalog = catalog
        self._clock = clock
        self._rng = rng or random.Random()
        self.on_profile_changed = tuple(on_profile_changed)
        self._attribute_fields: dict[str, tuple[str, float]] = {}  # name -> (field, ttl)
        self._event_ttls: dict[str, float] = {}

    @property
    def catalog(self) -> TraitCatalog:
        return self._catalog

    @catalog.setter
    def catalog(self, catalog: TraitCatalog) -> None:
        self._catalog = catalog
        self._attribute_fields.clear()
        self._event_ttls.clear()

    async def apply(self, updates: Mapping[str, ProfileUpdate]) -> int:
        """Write the updates (by DMP uid); return how many events had already expired."""
        return await self.write(self.prepare(updates))

    def prepare(self, updates: Mapping[str, ProfileUpdate]) -> TraitWrites:
        """The fields of the updates, grouped by key and TTL (no I/O: ``write`` stores them).

        Preparing a batch while the store still commits the previous one lets the two
        overlap; ``apply`` does both at once.
        """
        now = self._clock()
        if self.staging is not None:
            return self._staged(updates, now)
        found = TraitWrites(list(updates))
        limit = self.catalog.max_events_per_name
        encode = _encode
        attribute_fields = self._attribute_fields
        event_ttls = self._event_ttls
        partners: dict[str, bytes] = {}
        writes = found.writes
        for dmp_uid, update in updates.items():
            key = keys.traits_key(dmp_uid)
            by_ttl: dict[float, dict[str, bytes]] = {}
            for name, value in update.attributes.items():
                spec = attribute_fields.get(name)
                if spec is None:
                    spec = self._attribute_field(name)
                group = by_ttl.get(spec[1])
                if group is None:
                    by_ttl[spec[1]] = {spec[0]: encode(value)}
                else:
                    group[spec[0]] = encode(value)
            writes[key] = by_ttl
            if update.remove:
                found.removals.append((key, [ATTRIBUTE + n for n in update.remove]))
            if not update.events:
                continue
            partner = partners.get(update.partner)
            if partner is None:
                partner = partners[update.partner] = update.partner.encode()
            live: list[tuple[str, int, float]] = []
            for name, ts in update.events:
                ttl = event_ttls.get(name)
                if ttl is None:
                    ttl = self._event_ttl(name)
                # as TraitCatalog.event_expiry: the trait's TTL after ts, up to the hour
                left = math.ceil((ts + ttl) / EVENT_EXPIRY_STEP) * EVENT_EXPIRY_STEP - now
                if left <= 0:
                    found.expired += 1
                else:
                    live.append((name, ts, left))
            kept = _newest(live, limit)
            for name, ts, left in kept:
                group = by_ttl.get(left)
                if group is None:
                    by_ttl[left] = {f"{EVENT}{name}|{ts}": partner}
                else:
                    group[f"{EVENT}{name}|{ts}"] = partner
            if live and self._due_for_trim(len(live)):
                found.trims[key] = list(kept)
        return found

    def _staged(self, updates: Mapping[str, ProfileUpdate], now: float) -> TraitWrites:
        """The updates as staged for the engine, without the events already lapsed."""
        found = TraitWrites(list(updates))
        expiry = self.catalog.event_expiry
        for dmp_uid, update in updates.items():
            events = tuple(sorted(e for e in update.events if expiry(e[0], e[1]) > now))
            found.expired += len(update.events) - len(events)
            found.staged.append(
                StagedUpdate(
                    dmp_uid, update.partner, now, dict(update.attributes),
                    tuple(sorted(update.remove)), events,
                )
            )  # fmt: skip
        return found

    async def write(self, prepared: TraitWrites) -> int:
        """Store prepared updates; return how many events had already expired.

        Every field of every profile goes in one ``hset_many``. The profiles due for a trim
        (``_due_for_trim``) are read first, in one ``hgetall_many`` that does not wait for this
        batch's write: their stored events and the new ones are trimmed together.
        """
        if not prepared.uids:
            return 0
        if self.staging is not None:
            await asyncio.to_thread(self.staging.append, prepared.staged)
            await self._changed(prepared.uids)
            return prepared.expired
        writes = prepared.writes
        excess = await self._excess(prepared.trims, writes) if prepared.trims else {}
        items = [(key, m, ttl) for key, by_ttl in writes.items() for ttl, m in by_ttl.items() if m]
        # the profiles marked changed in the same write, for the analytics engine's reload
        await self._store.hset_many(items + self._marks.writes(prepared.uids, self._clock()))
        await gather_bounded(
            (self._store.hdel(key, fields) for key, fields in prepared.removals), CONCURRENCY
        )
        await gather_bounded(
            (self._store.hdel(key, fields) for key, fields in excess.items()), CONCURRENCY
        )
        await self._changed(prepared.uids)
        return prepared.expired

    def _attribute_field(self, name: str) -> tuple[str, float]:
        """An attribute's field name and TTL (remembered: names repeat)."""
        if len(self._attribute_fields) >= MAX_REMEMBERED:
            self._attribute_fields.clear()
        spec = self._attribute_fields[name] = (
            ATTRIBUTE + name,
            self.catalog.attribute_ttl_of(name),
        )
        return spec

    def _event_ttl(self, name: str) -> float:
        """An event's TTL (remembered: names repeat)."""
        if len(self._event_ttls) >= MAX_REMEMBERED:
            self._event_ttls.clear()
        trait = self.catalog.traits.get(name)
        ttl = self._event_ttls[name] = (
            self.catalog.event_ttl if trait is None else trait.ttl_seconds
        )
        return ttl

    def _due_for_trim(self, events: int) -> bool:
        """Whether a profile that gets ``events`` events now is trimmed now.

        Reading a profile to trim it costs as much as writing it, so it is not done at every
        write: with probability ``events / trim_every`` (1 from ``trim_every`` events on),
        where ``trim_every`` is half of ``max_events_per_name``. A profile then holds about
        ``trim_every`` events per name beyond the bound on average, rarely several times that
        (each event ends the wait with the same probability); readers cap what they return
        to the bound anyway, and events expire with their trait's TTL.
        """
        every = max(1, self.catalog.max_events_per_name // 2)
        return events >= every or self._rng.random() * every < events

    async def _excess(
        self,
        added: dict[str, list[tuple[str, int, float]]],
        writes: dict[str, dict[float, dict[str, bytes]]],
    ) -> dict[str, list[str]]:
        """Stored event fields beyond the newest ``max_events_per_name`` of their name, once
        the new events are in; new ones beyond it are taken out of ``writes``."""
        limit = self.catalog.max_events_per_name
        found: dict[str, list[str]] = {}
        names = list(added)
        for i in range(0, len(names), TRIM_CHUNK):
            chunk = names[i : i + TRIM_CHUNK]
            for key, fields in zip(chunk, await self._store.hgetall_many(chunk), strict=True):
                _, stored = decode_traits(fields, None)
                new: dict[str, dict[int, float]] = {}
                for name, ts, ttl in added[key]:
                    new.setdefault(name, {})[ts] = ttl
                for name, mine in new.items():
                    old = {int(ts) for ts in stored.get(name, ())}
                    stamps = sorted(old | mine.keys(), reverse=True)
                    for ts in stamps[limit:]:
                        field = event_field(name, ts)
                        if ts in old:
                            found.setdefault(key, []).append(field)
                        if ts in mine:
                            writes[key][mine[ts]].pop(field, None)
        return found

    async def _changed(self, dmp_uids: list[str]) -> None:
        for callback in self.on_profile_changed:
            try:
                await callback(dmp_uids)
            except Exception:  # a subscriber's failure must not undo or fail the ingestion
                log.exception("an on_profile_changed callback failed (%d profiles)", len(dmp_uids))
