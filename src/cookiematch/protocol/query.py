"""Strict query-string parsing and canonical re-encoding.

See docs/protocol.md, "Parsing the match tag".

``parse_query`` is deliberately not ``urllib.parse.parse_qsl``: that one is lenient (it keeps a
malformed ``%4`` as is and replaces undecodable bytes), while a match tag with bad encoding is
not from a tag anyone configured and is rejected with :class:`~cookiematch.errors.QueryError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from cookiematch.errors import QueryError

MAX_QUERY_BYTES = 8192

# A '%' not followed by two hex digits.
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# C0 controls and DEL, raw in the query or percent-decoded.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# What encode_component keeps literal: RFC 3986 unreserved characters and ','.
_LITERAL = re.compile(r"[A-Za-z0-9._~,-]*")
_LITERAL_FULLMATCH = _LITERAL.fullmatch
_SAFE = ",~"


@dataclass(frozen=True, slots=True)
class QueryParam:
    """One ``name[=value]`` pair; ``value is None`` for a valueless flag (``&google_cm``)."""

    name: str
    value: str | None


def decode_component(component: str) -> str:
    """One name or value with '%' or '+': '+' is a space, %XX decoded (already validated by
    :func:`bad_percent`), the bytes must be UTF-8 (else UnicodeDecodeError) and free of
    control characters (else QueryError)."""
    text = unquote_to_bytes(component.replace("+", " ")).decode("utf-8")
    if not (text.isascii() and text.isprintable()) and _CONTROL_CHARS.search(text) is not None:
        raise QueryError("control character in query string")
    return text


def bad_percent(text: str) -> bool:
    """Whether ``text`` has a '%' not followed by two hex digits."""
    return _BAD_PERCENT.search(text) is not None


def parse_query(raw: bytes | str, *, max_bytes: int = MAX_QUERY_BYTES) -> tuple[QueryParam, ...]:
    """Parse a raw query string (without ``?``); raise QueryError on malformed input.

    ``&``-separated pairs; a pair without ``=`` is a valueless flag; empty pairs (``&&``) and
    pairs with an empty name (``=v``) are skipped. Rejected: a query over ``max_bytes``,
    bad percent-encoding, bytes that are not UTF-8, control characters (raw or encoded).
    """
    try:
        if isinstance(raw, str):
            text = raw
            size = len(raw) if raw.isascii() else len(raw.encode("utf-8"))
        else:
            size = len(raw)
            text = raw.decode("utf-8") if size <= max_bytes else ""
    except UnicodeError:  # undecodable bytes, or a str with lone surrogates
        raise QueryError("query string is not UTF-8") from None
    if size > max_bytes:
        raise QueryError(f"query string longer than {max_bytes} bytes")
    if not text:
        return ()
    # Raw control characters; the ASCII check makes the common case two C calls.
    if not (text.isascii() and text.isprintable()) and _CONTROL_CHARS.search(text) is not None:
        raise QueryError("control character in query string")
    escaped = "%" in text
    if escaped and bad_percent(text):
        raise QueryError("bad percent-encoding in query string")
    slow = escaped or "+" in text
    out: list[QueryParam] = []
    append = out.append
    try:
        for pair in text.split("&"):
            if not pair:
                continue
            name, eq, value = pair.partition("=")
            if not name:
                continue
            if slow:
                if "%" in name or "+" in name:
                    name = decode_component(name)
                if "%" in value or "+" in value:
                    value = decode_component(value)
            append(QueryParam(name, value if eq else None))
    except UnicodeDecodeError:
        raise QueryError("query string is not UTF-8") from None
    return tuple(out)


def is_literal(text: str) -> bool:
    """Whether :func:`encode_component` leaves ``text`` as it is."""
    return _LITERAL_FULLMATCH(text) is not None


def encode_component(text: str) -> str:
    """Percent-encode a name or value: unreserved characters and ``,`` stay literal.

    Everything else is UTF-8 percent-encoded with uppercase hex (a space is ``%20``).
    """
    if (text.isascii() and text.isalnum()) or _LITERAL_FULLMATCH(text) is not None:
        return text
    return quote(text, safe=_SAFE, errors="strict")


def encode_param(param: QueryParam) -> str:
    """``name=value``, or ``name`` for a valueless flag, both encoded."""
    if param.value is None:
        return encode_component(param.name)
    return f"{encode_component(param.name)}={encode_component(param.value)}"


def encode_query(params: tuple[QueryParam, ...] | list[QueryParam]) -> str:
    """Re-encode parameters canonically, keeping valueless flags valueless."""
    return "&".join([encode_param(p) for p in params])
