"""Impression, click and conversion events from ad tags, tallied on the DMP profile.

An ad server fills ``campaign``, ``site`` and ``creative`` with its macros; each value is 1-64
characters of ``A-Z a-z 0-9 _ . : ~ -``, so an unexpanded macro (``%%SITE%%``, ``${SITE}``,
``[SITE]``) is refused instead of becoming a bogus audience. ``site`` and ``creative`` may be
left out (recorded as ``-``). A profile keeps at most ``max_events_per_profile`` distinct
(event, campaign, site, creative) tallies; a new one evicts the least recently seen. Tallies
are read-modify-write: concurrent events of one browser may undercount (never corrupt).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from cookiematch.dmp import keys
from cookiematch.dmp.change_marks import MARKING, ChangeMarks
from cookiematch.errors import QueryError
from cookiematch.storage.base import FieldWrite, Store

_VALUE = re.compile(r"[A-Za-z0-9_.:~-]{1,64}")
NONE = "-"


class EventType(enum.Enum):
    IMP = "imp"
    CLICK = "click"
    CONV = "conv"


@dataclass(frozen=True, slots=True)
class ImpressionEvent:
    event: EventType
    campaign: str
    site: str = NONE
    creative: str = NONE

    @property
    def field(self) -> str:
        return f"{self.event.value}|{self.campaign}|{self.site}|{self.creative}"

    @classmethod
    def from_field(cls, field: str) -> ImpressionEvent | None:
        parts = field.split("|")
        if len(parts) != 4:
            return None
        try:
            return cls(EventType(parts[0]), parts[1], parts[2], parts[3])
        except ValueError:
            return None


def parse_event(params: Mapping[str, str | None]) -> ImpressionEvent:
    """The event of an ``/imp`` query; raises QueryError naming the bad parameter."""
    raw_event = params.get("event") or EventType.IMP.value
    try:
        event = EventType(raw_event)
    except ValueError:
        raise QueryError("event must be imp, click or conv") from None
    values: dict[str, str] = {}
    for name in ("campaign", "site", "creative"):
        value = params.get(name) or ""
        if not value:
            if name == "campaign":
                raise QueryError("campaign is required")
            value = NONE
        elif _VALUE.fullmatch(value) is None:
            raise QueryError(f"{name} must be 1-64 characters of A-Z a-z 0-9 _ . : ~ -")
        values[name] = value
    return ImpressionEvent(event, values["campaign"], values["site"], values["creative"])


class EventTally(msgspec.Struct, array_like=True, frozen=True):
    count: int
    first: float
    last: float


_decoder = msgspec.json.Decoder(EventTally)


def decode_tally(raw: bytes) -> EventTally | None:
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError:
        return None


class EventLog:
    """Bounded per-profile event tallies."""

    def __init__(
        self,
        store: Store,
        *,
        max_per_profile: int,
        ttl_seconds: float,
        marks: ChangeMarks = MARKING,
    ) -> None:
        self._store = store
        self._max = max_per_profile
        self._ttl = ttl_seconds
        self._marks = marks

    async def record(self, dmp_uid: str, event: ImpressionEvent, now: float) -> None:
        key = keys.events_key(dmp_uid)
        field = event.field
        raw = await self._store.hget(key, field)
        previous = decode_tally(raw) if raw is not None else None
        if previous is None:
            tally = EventTally(1, now, now)
            await self._make_room(key)
        else:
            tally = EventTally(previous.count + 1, previous.first, now)
        write: FieldWrite = (key, {field: msgspec.json.encode(tally)}, self._ttl)
        await self._store.hset_many([write, *self._marks.write(dmp_uid, now)])

    async def _make_room(self, key: str) -> None:
        existing = await self._store.hgetall(key)
        excess = len(existing) - self._max + 1
        if excess <= 0:
            return

        def last_seen(item: tuple[str, bytes]) -> float:
            tally = decode_tally(item[1])
            return tally.last if tally is not None else float("-inf")

        oldest = sorted(existing.items(), key=last_seen)[:excess]
        await self._store.hdel(key, [field for field, _ in oldest])

    async def tallies(self, dmp_uid: str) -> dict[ImpressionEvent, EventTally]:
        raw = await self._store.hgetall(keys.events_key(dmp_uid))
        found: dict[ImpressionEvent, EventTally] = {}
        for field, value in raw.items():
            event = ImpressionEvent.from_field(field)
            tally = decode_tally(value)
            if event is not None and tally is not None:
                found[event] = tally
        return found
