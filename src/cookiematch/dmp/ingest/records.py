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
from typing import Annotated

import msgspec

from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.dmp.snapshot import AttributeValue
from cookiematch.dmp.traits.schema import TraitCatalog, TraitKind
from cookiematch.errors import RecordError
from cookiematch.protocol.json_errors import JSON_ERRORS, describe

UID = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII, as a callback's uid
NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_UID = 256
MAX_STRING = 1024
MAX_LIST = 100
MAX_EVENTS = 1000  # per record
MAX_ATTRIBUTES = 200  # per record
FUTURE_SLACK = float(SECONDS_PER_DAY)  # an event may be stamped at most a day ahead of our clock
LIST_SEPARATOR = "|"
MAX_REMEMBERED = 10_000  # names a Checker remembers as valid (then it starts over)


def _documented(description: str, **schema: object) -> msgspec.Meta:
    """What a field must be, for the published JSON Schema only: the rules above are checked
    by ``Checker`` (a record breaking one is refused alone), never by the decoder."""
    return msgspec.Meta(description=description, extra_json_schema=schema)


Name = Annotated[str, _documented("a trait name", pattern=f"^{NAME.pattern}$")]
Text = Annotated[str, msgspec.Meta(extra_json_schema={"maxLength": MAX_STRING})]
JsonValue = (
    Text
    | int
    | float
    | bool
    | Annotated[list[Text], msgspec.Meta(extra_json_schema={"maxItems": MAX_LIST})]
    | None
)


class RawEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    name: Name
    ts: Annotated[
        int | float,
        _documented("Unix seconds, at most a day ahead of the DMP's clock", exclusiveMinimum=0),
    ]


class RawRecord(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One partner record: its uid, attributes to set (null: remove), events, names to
    remove."""

    uid: Annotated[
        str,
        _documented("the partner's user ID (printable ASCII)", pattern=f"^{UID.pattern}$"),
    ]
    attributes: Annotated[
        dict[Name, JsonValue],
        _documented("name -> new value; null removes it", maxProperties=MAX_ATTRIBUTES),
    ] = {}
    events: Annotated[tuple[RawEvent, ...], _documented("its events", maxItems=MAX_EVENTS)] = ()
    remove: tuple[Name, ...] = ()


class Record(msgspec.Struct, frozen=True, gc=False):
    """A valid record: ``attributes`` maps a name to its new value, or None to remove it."""

    uid: str
    attributes: Mapping[str, AttributeValue | None]
    remove: tuple[str, ...] = ()
    events: tuple[tuple[str, int], ...] = ()


_decoder = msgspec.json.Decoder(RawRecord)


def attribute_values(attributes: Mapping[str, object]) -> int:
    """The values a record sets (a null removes, it sets nothing): what the funnel counts."""
    return sum(1 for value in attributes.values() if value is not None)


def uid_ok(uid: str) -> bool:
    """1-256 printable ASCII characters, no space (``UID`` without a regex)."""
    return 0 < len(uid) <= MAX_UID and uid.isascii() and uid.isprintable() and " " not in uid


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


class Checker:
    """The rules of one catalog, remembering the names it found valid (they repeat).

    ``validate`` raises RecordError with the first broken rule, in the order: uid, sizes,
    attributes (name, value, declared type), ``remove`` names, events (name, declared kind,
    time).
    """

    def __init__(self, catalog: TraitCatalog) -> None:
        self.catalog = catalog
        self._names: set[str] = set()  # match NAME
        self._events: set[str] = set()  # match NAME and may be events
        # attributes need the catalog only for declared names, or to refuse unknown ones
        self._declared = catalog.traits
        self._all_checked = catalog.reject_unknown

    def _name(self, name: str) -> bool:
        if NAME.fullmatch(name) is None:
            return False
        if len(self._names) >= MAX_REMEMBERED:
            self._names.clear()
        self._names.add(name)
        return True

    def validate(self, raw: RawRecord, now: float) -> Record:
        """The record if every rule holds; raises RecordError with the first broken rule."""
        uid = raw.uid
        if not uid_ok(uid):
            raise RecordError("uid: expected 1-256 printable ASCII characters")
        attributes = raw.attributes
        events = raw.events
        if len(attributes) > MAX_ATTRIBUTES or len(events) > MAX_EVENTS:
            raise RecordError(f"more than {MAX_ATTRIBUTES} attributes or {MAX_EVENTS} events")
        names = self._names
        for name, value in attributes.items():
            if name not in names and not self._name(name):
                raise RecordError(
                    f"attributes: bad name {name[:80]!r} (1-64 of A-Z a-z 0-9 _ . : -)"
                )
            if value is None:
                continue
            kind = type(value)
            if kind is str:
                if len(value) > MAX_STRING:  # type: ignore[arg-type]
                    raise RecordError(f"attributes.{name}: longer than {MAX_STRING} characters")
            elif kind is int or kind is bool:
                pass
            elif kind is float:
                if not math.isfinite(value):  # type: ignore[arg-type]
                    raise RecordError(f"attributes.{name}: not a finite number")
            else:  # lists, and any other type: the general check (catalog included)
                _check_value(name, value, self.catalog)
                continue
            if self._all_checked or name in self._declared:
                problem = self.catalog.attribute_problem(name, value)
                if problem is not None:
                    raise RecordError(f"attributes.{name}: {problem}")
        remove = raw.remove
        for name in remove:
            if name not in names and not self._name(name):
                raise RecordError(f"remove: bad name {name[:80]!r}")
        if not events:
            return Record(uid, attributes, remove)
        latest = now + FUTURE_SLACK
        found: list[tuple[str, int]] = []
        for i, event in enumerate(events):
            name = event.name
            if name not in self._events:
                self._event_name(i, name)
            ts = event.ts
            if not (0 < ts <= latest):
                raise RecordError(f"events[{i}].ts: not a Unix time in seconds up to now")
            found.append((name, ts if type(ts) is int else int(ts)))
        return Record(uid, attributes, remove, tuple(found))

    def _event_name(self, i: int, name: str) -> None:
        if NAME.fullmatch(name) is None:
            raise RecordError(f"events[{i}].name: bad name {name[:80]!r}")
        problem = self.catalog.event_problem(name)
        if problem is not None:
            raise RecordError(f"events[{i}].name: {name!r} {problem}")
        if len(self._events) >= MAX_REMEMBERED:
            self._events.clear()
        self._events.add(name)

    def parse_json(self, line: bytes, now: float) -> Record:
        """A JSON line (or one element of a JSON batch) as a valid record."""
        try:
            raw = _decoder.decode(line)
        except msgspec.ValidationError as exc:
            raise RecordError(str(exc)) from None
        except JSON_ERRORS as exc:
            raise RecordError(f"not JSON: {describe(exc)}") from None
        return self.validate(raw, now)

    def parse_row(self, row: Mapping[str, str | None], now: float) -> Record:
        """A CSV/TSV row (by header name) as a valid record."""
        return self.validate(_raw_row(row, self.catalog), now)


def validate(raw: RawRecord, catalog: TraitCatalog, now: float) -> Record:
    """The record if every rule holds; raises RecordError with the first broken rule."""
    return Checker(catalog).validate(raw, now)


def parse_json(line: bytes, catalog: TraitCatalog, now: float) -> Record:
    """A JSON line (or one element of a JSON batch) as a valid record."""
    return Checker(catalog).parse_json(line, now)


def _cell(name: str, text: str, catalog: TraitCatalog) -> AttributeValue:
    trait = catalog.traits.get(name)
    kind = TraitKind.STRING if trait is None else trait.kind
    if kind is TraitKind.NUMBER:
        try:
            number = float(text)
        except ValueError:
            raise RecordError(f"attributes.{name}: expected a number, got {text[:80]!r}") from None
        return int(number) if number.is_integer() and "." not in text else number
    if kind is TraitKind.BOOL:
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise RecordError(f"attributes.{name}: expected true, false, 1 or 0")
        return lowered in ("true", "1")
    if kind is TraitKind.LIST:
        return [item for item in text.split(LIST_SEPARATOR) if item]
    return text


def _raw_row(row: Mapping[str, str | None], catalog: TraitCatalog) -> RawRecord:
    uid = row.get("uid") or ""
    event, ts = row.get("event") or "", row.get("ts") or ""
    attributes: dict[str, JsonValue] = {}
    for name, text in row.items():
        if name is None or text is None:  # a row longer or shorter than the header
            raise RecordError("the row does not have as many cells as the header")
        if text and name not in ("uid", "event", "ts", "remove"):
            attributes[name] = _cell(name, text, catalog)
    events: tuple[RawEvent, ...] = ()
    if event:
        try:
            events = (RawEvent(event, float(ts)),)
        except ValueError:
            raise RecordError(f"ts: expected Unix seconds, got {ts[:80]!r}") from None
    remove = tuple(name for name in (row.get("remove") or "").split(LIST_SEPARATOR) if name)
    return RawRecord(uid, attributes, events, remove)


def parse_row(row: Mapping[str, str | None], catalog: TraitCatalog, now: float) -> Record:
    """A CSV/TSV row (by header name) as a valid record."""
    return Checker(catalog).parse_row(row, now)
