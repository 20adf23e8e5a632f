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
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# C0 controls and DEL, raw in the query or percent-decoded.
_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")
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


def _decode(component: bytes) -> str:
    """One name or value: '+' is a space, %XX decoded (already validated), strict UTF-8."""
    if b"+" in component:
        component = component.replace(b"+", b" ")
    if b"%" in component:
        component = unquote_to_bytes(component)
        text = component.decode("utf-8")  # UnicodeDecodeError handled by the caller
        if _CONTROL_CHARS.search(text) is not None:
            raise QueryError("control character in query string")
        return text
    return component.decode("utf-8")


def parse_query(raw: bytes | str, *, max_bytes: int = MAX_QUERY_BYTES) -> tuple[QueryParam, ...]:
    """Parse a raw query string (without ``?``); raise QueryError on malformed input.

    ``&``-separated pairs; a pair without ``=`` is a valueless flag; empty pairs (``&&``) and
    pairs with an empty name (``=v``) are skipped. Rejected: a query over ``max_bytes``,
    bad percent-encoding, bytes that are not UTF-8, control characters (raw or encoded).
    """
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError:
            raise QueryError("query string is not valid Unicode") from None
    if len(raw) > max_bytes:
        raise QueryError(f"query string longer than {max_bytes} bytes")
    if not raw:
        return ()
    if _BAD_PERCENT.search(raw) is not None:
        raise QueryError("bad percent-encoding in query string")
    if _CONTROL_BYTES.search(raw) is not None:
        raise QueryError("control character in query string")
    out: list[QueryParam] = []
    append = out.append
    try:
        for pair in raw.split(b"&"):
            if not pair:
                continue
            name, eq, value = pair.partition(b"=")
            if not name:
                continue
            append(QueryParam(_decode(name), _decode(value) if eq else None))
    except UnicodeDecodeError:
        raise QueryError("query string is not UTF-8") from None
    return tuple(out)


def encode_component(text: str) -> str:
    """Percent-encode a name or value: unreserved characters and ``,`` stay literal.

    Everything else is UTF-8 percent-encoded with uppercase hex (a space is ``%20``).
    """
    if _LITERAL_FULLMATCH(text) is not None:
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
