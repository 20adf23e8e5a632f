"""A profile's traits in the store: one field map per browser, ``dmp:{<dmp uid>}:t``, with the
store's per-field expiry:

    "a|<name>"          -> the attribute's JSON value; lives the trait's TTL after it was last
                           ingested (re-sending a value keeps it alive)
    "e|<name>|<ts>"     -> the partner that sent the event; lives the trait's TTL after ``ts``
                           (rounded up to the hour), so re-ingesting an event changes nothing

``TraitStore`` (``writes.py``) writes these fields; ``decode_traits`` reads them back, for the
``ProfileReader`` (``reader.py``) and for the writer's trimming.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from cookiematch.dmp.snapshot import AttributeValue

ATTRIBUTE = "a|"
EVENT = "e|"
SUFFIX = "t"  # dmp:{uid}:t

_value_decoder = msgspec.json.Decoder(AttributeValue)


def attribute_field(name: str) -> str:
    return ATTRIBUTE + name


def event_field(name: str, ts: int) -> str:
    return f"{EVENT}{name}|{ts}"


def decode_attribute(value: bytes) -> AttributeValue | None:
    """An ``a|<name>`` field's value, or None when it does not decode."""
    try:
        return _value_decoder.decode(value)
    except msgspec.DecodeError:
        return None


def split_event_field(name: str) -> tuple[str, float] | None:
    """An ``e|<name>|<ts>`` field's (event name, timestamp), or None for another field."""
    if not name.startswith(EVENT):
        return None
    event, sep, ts = name[2:].rpartition("|")
    return (event, float(ts)) if sep and ts.isdigit() else None


def decode_traits(
    fields: Mapping[str, bytes], max_events: int | None
) -> tuple[dict[str, AttributeValue], dict[str, tuple[float, ...]]]:
    """The ``:t`` map as (attributes by name, event timestamps by name, newest first)."""
    attributes: dict[str, AttributeValue] = {}
    stamps: dict[str, list[float]] = {}
    for name, value in fields.items():
        if name.startswith(ATTRIBUTE):
            decoded = decode_attribute(value)
            if decoded is not None:
                attributes[name[2:]] = decoded
        else:
            event = split_event_field(name)
            if event is not None:
                stamps.setdefault(event[0], []).append(event[1])
    events = {
        name: tuple(sorted(found, reverse=True)[:max_events])
        for name, found in sorted(stamps.items())
    }
    return dict(sorted(attributes.items())), events
