"""One partner record, parsed and validated: from a JSON line or a CSV/TSV row.

JSON: ``{"uid": "<partner uid>", "attributes": {"tier": "gold", "age": 31, "old": null},
"events": [{"name": "purchase", "ts": 1700000000}], "remove": ["x"]}``; every key but ``uid``
is optional, unknown keys are refused. ``null`` and ``remove`` delete an attribute.

CSV/TSV (a header row first): ``uid`` (required); ``event`` and ``ts`` (optional: an event of
that row); ``remove`` (optional: names separated by ``|``); every other column is an
attribute, an empty cell leaving it unchanged. Cells are strings unless the trait is declared:
``number``, ``bool`` (``true``/``false``/``1``/``0``) or ``list`` (items separated by ``|``).

A record that breaks a rule is refused whole with a reason (``RecordError``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from cookiematch.dmp.snapshot import AttributeValue
from cookiematch.dmp.traits import TraitCatalog, TraitKind
from cookiematch.errors import RecordError

UID = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII, as a callback's uid
NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_STRING = 1024
MAX_LIST = 100
MAX_EVENTS = 1000  # per record
MAX_ATTRIBUTES = 200  # per record
FUTURE_SLACK = 86400.0  # an event may be stamped at most a day ahead of our clock
LIST_SEPARATOR = "|"

JsonValue = str | int | float | bool | list[str] | None


class RawEvent(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    ts: int | float


class RawRecord(msgspec.Struct, forbid_unknown_fields=True):
    uid: str
    attributes: dict[str, JsonValue] = {}
    events: list[RawEvent] = []
    remove: list[str] = []


@dataclass(frozen=True, slots=True)
class Record:
    """A valid record: ``attributes`` maps a name to its new value, or None to remove it."""

    uid: str
    attributes: Mapping[str, AttributeValue | None]
    remove: tuple[str, ...] = ()
    events: tuple[tuple[str, int], ...] = ()


_decoder = msgspec.json.Decoder(RawRecord)


def _check_value(name: str, value: AttributeValue, catalog: TraitCatalog) -> None:
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise RecordError(f"attributes.{name}: longer than {MAX_STRING} characters")
    elif isinstance(value, list):
        if len(value) > MAX_LIST or any(len(item) > MAX_STRING for item in value):
            raise RecordError(f"attributes.{name}: over {MAX_LIST} items or too long an item")
    elif isinstance(value, float) and not math.isfinite(value):
        raise RecordError(f"attributes.{name}: not a finite number")
    problem = catalog.attribute_problem(name, value)
    if problem is not None:
        raise RecordError(f"attributes.{name}: {problem}")


def validate(raw: RawRecord, catalog: TraitCatalog, now: float) -> Record:
    """The record if every rule holds; raises RecordError with the first broken rule."""
    if UID.fullmatch(raw.uid) is None:
        raise RecordError("uid: expected 1-256 printable ASCII characters")
    if len(raw.attributes) > MAX_ATTRIBUTES or len(raw.events) > MAX_EVENTS:
        raise RecordError(f"more than {MAX_ATTRIBUTES} attributes or {MAX_EVENTS} events")
    for name, value in raw.attributes.items():
        if NAME.fullmatch(name) is None:
            raise RecordError(f"attributes: bad name {name[:80]!r} (1-64 of A-Z a-z 0-9 _ . : -)")
        if value is not None:
            _check_value(name, value, catalog)
    for name in raw.remove:
        if NAME.fullmatch(name) is None:
            raise RecordError(f"remove: bad name {name[:80]!r}")
    events: list[tuple[str, int]] = []
    for i, event in enumerate(raw.events):
        if NAME.fullmatch(event.name) is None:
            raise RecordError(f"events[{i}].name: bad name {event.name[:80]!r}")
        problem = catalog.event_problem(event.name)
        if problem is not None:
            raise RecordError(f"events[{i}].name: {event.name!r} {problem}")
        if not (0 < event.ts <= now + FUTURE_SLACK):
            raise RecordError(f"events[{i}].ts: not a Unix time in seconds up to now")
        events.append((event.name, int(event.ts)))
    return Record(raw.uid, raw.attributes, tuple(raw.remove), tuple(events))


def parse_json(line: bytes, catalog: TraitCatalog, now: float) -> Record:
    """A JSON line (or one element of a JSON batch) as a valid record."""
    try:
        raw = _decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise RecordError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise RecordError(f"not JSON: {exc}") from None
    return validate(raw, catalog, now)


def _cell(name: str, text: str, catalog: TraitCatalog) -> AttributeValue:
    trait = catalog.traits.get(name)
    kind = TraitKind.STRING if trait is None else trait.kind
    if kind is TraitKind.NUMBER:
        try:
            number = float(text)
        except ValueError:
            raise RecordError(f"{name}: expected a number, got {text[:80]!r}") from None
        return int(number) if number.is_integer() and "." not in text else number
    if kind is TraitKind.BOOL:
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise RecordError(f"{name}: expected true, false, 1 or 0")
        return lowered in ("true", "1")
    if kind is TraitKind.LIST:
        return [item for item in text.split(LIST_SEPARATOR) if item]
    return text


def parse_row(row: Mapping[str, str | None], catalog: TraitCatalog, now: float) -> Record:
    """A CSV/TSV row (by header name) as a valid record."""
    uid = row.get("uid") or ""
    event, ts = row.get("event") or "", row.get("ts") or ""
    attributes: dict[str, JsonValue] = {}
    for name, text in row.items():
        if name is None or text is None:  # a row longer or shorter than the header
            raise RecordError("the row does not have as many cells as the header")
        if text and name not in ("uid", "event", "ts", "remove"):
            attributes[name] = _cell(name, text, catalog)
    events: list[RawEvent] = []
    if event:
        try:
            events.append(RawEvent(event, float(ts)))
        except ValueError:
            raise RecordError(f"ts: expected Unix seconds, got {ts[:80]!r}") from None
    remove = [name for name in (row.get("remove") or "").split(LIST_SEPARATOR) if name]
    return validate(RawRecord(uid, attributes, events, remove), catalog, now)
