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
