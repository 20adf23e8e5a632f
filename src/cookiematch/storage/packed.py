"""A field map packed into one value: the SQLite backend's row format for ``fm``.

The packed form is a MessagePack map ``{field: [value, expires_at]}``: ``field`` a str,
``value`` bin, ``expires_at`` a float64 of wall-clock seconds or nil (no expiry). msgspec
encodes and decodes it in C; decoding checks the shape, so a damaged row raises.
"""

from __future__ import annotations

import msgspec

Entry = tuple[bytes, float | None]
"""A stored field: its value and when it expires (wall-clock seconds; None: never)."""

Fields = dict[str, Entry]
"""A field map as stored: field → (value, expires_at)."""

_encode = msgspec.msgpack.Encoder().encode
_decoder = msgspec.msgpack.Decoder(Fields)


def unpack(blob: bytes) -> Fields:
    """Every field of a packed map, expired ones included."""
    return _decoder.decode(blob)


def pack(fields: Fields) -> tuple[bytes, float | None]:
    """The packed map and its earliest field expiry (None if no field expires)."""
    earliest: float | None = None
    for _, expires_at in fields.values():
        if expires_at is not None and (earliest is None or expires_at < earliest):
            earliest = expires_at
    return _encode(fields), earliest


def drop_expired(fields: Fields, now: float) -> int:
    """Remove the fields expired at ``now`` (in place); return how many."""
    gone = [f for f, (_, at) in fields.items() if at is not None and at <= now]
    for field in gone:
        del fields[field]
    return len(gone)


def merge(blob: bytes, expires_at: float | None, new: Fields, now: float) -> Fields:
    """A packed map with ``new`` set over it (later wins), without the fields expired at
    ``now``; ``expires_at`` is the row's earliest expiry."""
    fields = _decoder.decode(blob)
    if expires_at is not None and expires_at <= now:
        drop_expired(fields, now)
    fields.update(new)
    return fields


def live_values(blob: bytes, expires_at: float | None, now: float) -> dict[str, bytes]:
    """``{field: value}`` of the fields live at ``now``; ``expires_at`` is the row's earliest
    expiry (when it has not passed, no field is filtered one by one)."""
    fields = _decoder.decode(blob)
    if expires_at is None or expires_at > now:
        return {field: value for field, (value, _) in fields.items()}
    return {f: v for f, (v, at) in fields.items() if at is None or at > now}


def live_entries(blob: bytes, expires_at: float | None, now: float) -> Fields:
    """The fields live at ``now``, with their expiry."""
    fields = _decoder.decode(blob)
    if expires_at is not None and expires_at <= now:
        drop_expired(fields, now)
    return fields
