"""Traits: a profile's ingested attributes and events, each with a TTL per trait; and the
``ProfileReader`` that builds ``ProfileSnapshot`` values (the contract with segments).

One field map per browser, ``dmp:{<dmp uid>}:t``, with the store's per-field expiry:

    "a|<name>"          -> the attribute's JSON value; lives the trait's TTL after it was last
                           ingested (re-sending a value keeps it alive)
    "e|<name>|<ts>"     -> the partner that sent the event; lives the trait's TTL after ``ts``
                           (rounded up to the hour), so re-ingesting an event changes nothing

Setting an attribute overwrites it (set semantics), ``null`` or ``remove`` deletes it; an
event is a field per (name, ts), so duplicates collapse by construction. After each write the
names that got events are trimmed to the newest ``max_events_per_name``. Every write calls the
``on_profile_changed`` callbacks with the DMP uids it touched (segments subscribe there).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from cookiematch.dmp import keys
from cookiematch.dmp.events import ImpressionEvent, decode_tally
from cookiematch.dmp.matches import PartnerMatch
from cookiematch.dmp.snapshot import AttributeValue, ProfileSnapshot
from cookiematch.storage.base import Durability, Store

log = logging.getLogger(__name__)

ATTRIBUTE = "a|"
EVENT = "e|"
SUFFIX = "t"  # dmp:{uid}:t
DAY = 86400.0
EVENT_EXPIRY_STEP = 3600.0  # event expiries are rounded up to the hour, so they share writes
CONCURRENCY = 2000  # store calls in flight per step
ASYNC = Durability.ASYNC

ProfileChanged = Callable[[list[str]], Awaitable[None]]
RawProfile = Mapping[str, Mapping[str, bytes]]
"""A browser's field maps by key suffix (``p``, ``e``, ``t``, ...): field -> value."""


class TraitKind(enum.Enum):
    STRING = "string"
    NUMBER = "number"
    BOOL = "bool"
    LIST = "list"  # a list of strings
    EVENT = "event"


@dataclass(frozen=True, slots=True)
class TraitDef:
    """A declared trait: its value type and how long a value lives."""

    name: str
    kind: TraitKind
    ttl_seconds: float


def _type_problem(kind: TraitKind, value: AttributeValue) -> str | None:
    if kind is TraitKind.STRING:
        ok = isinstance(value, str)
    elif kind is TraitKind.NUMBER:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind is TraitKind.BOOL:
        ok = isinstance(value, bool)
    elif kind is TraitKind.LIST:
        ok = isinstance(value, list)
    else:
        return "is an event, not an attribute"
    return None if ok else f"expected {kind.value}"


@dataclass(frozen=True, slots=True)
class TraitCatalog:
    """Declared traits, and the defaults for names that are not declared."""

    traits: Mapping[str, TraitDef] = field(default_factory=dict)
    attribute_ttl: float = 90 * DAY
    event_ttl: float = 90 * DAY
    max_events_per_name: int = 50
    reject_unknown: bool = False  # True: a record naming an undeclared trait is rejected

    def attribute_problem(self, name: str, value: AttributeValue) -> str | None:
        trait = self.traits.get(name)
        if trait is None:
            return "unknown trait" if self.reject_unknown else None
        return _type_problem(trait.kind, value)

    def event_problem(self, name: str) -> str | None:
        trait = self.traits.get(name)
        if trait is None:
            return "unknown trait" if self.reject_unknown else None
        return None if trait.kind is TraitKind.EVENT else f"is a {trait.kind.value} attribute"

    def attribute_ttl_of(self, name: str) -> float:
        trait = self.traits.get(name)
        return self.attribute_ttl if trait is None else trait.ttl_seconds

    def event_expiry(self, name: str, ts: int) -> float:
        """When an event stops counting: its trait's TTL after ``ts``, rounded up to the hour."""
        trait = self.traits.get(name)
        ttl = self.event_ttl if trait is None else trait.ttl_seconds
        return math.ceil((ts + ttl) / EVENT_EXPIRY_STEP) * EVENT_EXPIRY_STEP


@dataclass(slots=True)
class ProfileUpdate:
    """What one batch does to one profile; records are merged in order (later wins)."""

    partner: str
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    remove: set[str] = field(default_factory=set)
    events: set[tuple[str, int]] = field(default_factory=set)

    def merge(
        self,
        attributes: Mapping[str, AttributeValue | None],
        remove: Iterable[str],
        events: Iterable[tuple[str, int]],
    ) -> None:
        for name in remove:
            self.attributes.pop(name, None)
            self.remove.add(name)
        for name, value in attributes.items():
            if value is None:
                self.attributes.pop(name, None)
                self.remove.add(name)
            else:
                self.remove.discard(name)
                self.attributes[name] = value
        self.events.update(events)


def attribute_field(name: str) -> str:
    return ATTRIBUTE + name


def event_field(name: str, ts: int) -> str:
    return f"{EVENT}{name}|{ts}"


_encode = msgspec.json.encode
_value_decoder = msgspec.json.Decoder(AttributeValue)


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


class TraitStore:
    """Writes profile updates; calls ``on_profile_changed`` after each write."""

    def __init__(self, store: Store, catalog: TraitCatalog, *, clock: Callable[[], float]) -> None:
        self._store = store
        self.catalog = catalog
        self._clock = clock
        self.on_profile_changed: list[ProfileChanged] = []

    async def apply(self, updates: Mapping[str, ProfileUpdate]) -> int:
        """Write the updates (by DMP uid); return how many events had already expired."""
        if not updates:
            return 0
        now = self._clock()
        expired = 0
        writes: list[Coroutine[Any, Any, Any]] = []
        removals: list[Coroutine[Any, Any, Any]] = []
        trim: list[str] = []
        for dmp_uid, update in updates.items():
            key = keys.traits_key(dmp_uid)
            by_ttl: dict[float, dict[str, bytes]] = {}
            for name, value in update.attributes.items():
                ttl = self.catalog.attribute_ttl_of(name)
                by_ttl.setdefault(ttl, {})[ATTRIBUTE + name] = _encode(value)
            partner = update.partner.encode()
            for name, ts in update.events:
                ttl = self.catalog.event_expiry(name, ts) - now
                if ttl <= 0:
                    expired += 1
                    continue
                by_ttl.setdefault(ttl, {})[event_field(name, ts)] = partner
            writes += [self._store.hset(key, m, ttl=ttl) for ttl, m in by_ttl.items()]
            if update.remove:
                removals.append(self._store.hdel(key, [ATTRIBUTE + n for n in update.remove]))
            if update.events:
                trim.append(dmp_uid)
        await gather_bounded(writes, CONCURRENCY, queued=self._store.durability is ASYNC)
        await gather_bounded(removals, CONCURRENCY)
        await gather_bounded((self._trim(uid) for uid in trim), CONCURRENCY)
        await self._changed(list(updates))
        return expired

    async def _trim(self, dmp_uid: str) -> None:
        """Keep the newest ``max_events_per_name`` timestamps of each event name."""
        key = keys.traits_key(dmp_uid)
        fields = await self._store.hgetall(key)
        _, events = decode_traits(fields, None)
        limit = self.catalog.max_events_per_name
        excess = [
            event_field(name, int(ts))
            for name, stamps in events.items()
            if len(stamps) > limit
            for ts in stamps[limit:]
        ]
        if excess:
            await self._store.hdel(key, excess)

    async def _changed(self, dmp_uids: list[str]) -> None:
        for callback in self.on_profile_changed:
            try:
                await callback(dmp_uids)
            except Exception:  # a subscriber's failure must not undo or fail the ingestion
                log.exception("an on_profile_changed callback failed (%d profiles)", len(dmp_uids))


def decode_traits(
    fields: Mapping[str, bytes], max_events: int | None
) -> tuple[dict[str, AttributeValue], dict[str, tuple[float, ...]]]:
    """The ``:t`` map as (attributes by name, event timestamps by name, newest first)."""
    attributes: dict[str, AttributeValue] = {}
    stamps: dict[str, list[float]] = {}
    for name, value in fields.items():
        if name.startswith(ATTRIBUTE):
            try:
                attributes[name[2:]] = _value_decoder.decode(value)
            except msgspec.DecodeError:
                continue
        elif name.startswith(EVENT):
            event, sep, ts = name[2:].rpartition("|")
            if sep and ts.isdigit():
                stamps.setdefault(event, []).append(float(ts))
    events = {
        name: tuple(sorted(found, reverse=True)[:max_events])
        for name, found in sorted(stamps.items())
    }
    return dict(sorted(attributes.items())), events


_match = msgspec.json.Decoder(PartnerMatch)


class ProfileReader:
    """Builds ``ProfileSnapshot`` values from the store: one, or many at once.

    ``build`` is pure and has the shape of the segment part's snapshot builder, so
    ``StoredProfiles(store, reader.build, ProfileReader.SUFFIXES)`` scans full profiles.
    """

    SUFFIXES = ("p", "e", SUFFIX)

    def __init__(
        self, store: Store, *, max_events_per_name: int = 50, clock: Callable[[], float] = time.time
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
        """Snapshots in the order of ``dmp_uids`` (reads pipelined, bounded in flight)."""
        now = self._clock()
        found: list[ProfileSnapshot] = []
        step = CONCURRENCY // len(self.SUFFIXES)
        for i in range(0, len(dmp_uids), step):
            chunk = dmp_uids[i : i + step]
            found += await asyncio.gather(*(self.snapshot(uid, now) for uid in chunk))
        return found

    async def traits(
        self, dmp_uid: str
    ) -> tuple[dict[str, AttributeValue], dict[str, tuple[float, ...]]]:
        """Attributes and event timestamps (newest first) of one profile."""
        return decode_traits(await self._store.hgetall(keys.traits_key(dmp_uid)), self._max_events)

    def build(self, dmp_uid: str, raw: RawProfile, now: float) -> ProfileSnapshot:
        """A snapshot from a browser's raw field maps (expired fields are already left out)."""
        attributes, events = decode_traits(raw.get(SUFFIX, {}), self._max_events)
        partners: dict[str, str] = {}
        for partner, value in raw.get("p", {}).items():
            try:
                partners[partner] = _match.decode(value).uid
            except msgspec.DecodeError:
                continue
        exposures: dict[str, dict[str, int]] = {}
        for name, value in raw.get("e", {}).items():
            event, tally = ImpressionEvent.from_field(name), decode_tally(value)
            if event is not None and tally is not None:
                by_campaign = exposures.setdefault(event.event.value, {})
                by_campaign[event.campaign] = by_campaign.get(event.campaign, 0) + tally.count
        return ProfileSnapshot(dmp_uid, attributes, events, exposures, partners)
