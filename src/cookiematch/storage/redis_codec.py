"""How the Redis backends lay out values: a small header carrying the expiry, then the bytes.

    value  = 0x00 payload                      never expires
           | 0x01 expiry(6 bytes, ms, BE) payload

Plain keys also get a native ``PXAT`` expiry (Redis frees them); the header lets reads honour
the store's injected clock exactly, and gives field-map fields the per-field expiry Redis 7.0
lacks (no ``HEXPIRE``). A field map's key expires at the latest expiry of its fields.
"""

from __future__ import annotations

from collections.abc import Iterable

from cookiematch.errors import StorageError

_PLAIN = b"\x00"
_EXPIRING = 0x01
_STAMP = 6  # bytes of the big-endian millisecond expiry: good until the year 10889
FAR_FUTURE_MS = 253_402_300_799_000  # 9999-12-31: the key TTL of a map with a field kept forever


def expiry_ms(expires_at: float | None) -> int | None:
    return None if expires_at is None else round(expires_at * 1000)


def pack(value: bytes, expires_ms: int | None) -> bytes:
    if expires_ms is None:
        return _PLAIN + value
    return bytes((_EXPIRING,)) + expires_ms.to_bytes(_STAMP, "big") + value


def unpack(raw: bytes) -> tuple[bytes, int | None]:
    """``(payload, expiry in ms or None)``; StorageError if ``raw`` has no valid header."""
    if raw[:1] == _PLAIN:
        return raw[1:], None
    if raw[:1] == b"\x01" and len(raw) > _STAMP:
        return raw[1 + _STAMP :], int.from_bytes(raw[1 : 1 + _STAMP], "big")
    raise StorageError("redis: a value without a cookiematch header (written by another tool?)")


def live(raw: bytes | None, now_ms: float) -> bytes | None:
    """The payload of ``raw`` if it has not expired at ``now_ms``."""
    if raw is None:
        return None
    value, expires = unpack(raw)
    return value if expires is None or expires > now_ms else None


def remaining(raw: bytes, now_ms: float) -> tuple[bytes, float | None] | None:
    """``(payload, seconds left or None)``, or None if expired."""
    value, expires = unpack(raw)
    if expires is None:
        return value, None
    return (value, (expires - now_ms) / 1000) if expires > now_ms else None


def field_pairs(reply: dict[bytes, bytes] | list[bytes]) -> Iterable[tuple[bytes, bytes]]:
    """``(field, raw value)`` of an ``HGETALL`` reply: a map (RESP3, or parsed by redis-py) or
    the flat list RESP2 puts on the wire."""
    if isinstance(reply, dict):
        return reply.items()
    return zip(reply[::2], reply[1::2], strict=True)


def encode_key(key: str) -> bytes:
    try:
        return key.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise StorageError(f"redis: key or field is not encodable: {key!r}") from exc


def decode_key(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def glob_prefix(prefix: bytes) -> bytes:
    """A ``SCAN MATCH`` pattern for keys starting with ``prefix`` (glob characters escaped)."""
    out = bytearray()
    for byte in prefix:
        if byte in b"*?[]\\":
            out.append(0x5C)
        out.append(byte)
    return bytes(out) + b"*"
