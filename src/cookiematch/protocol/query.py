"""Strict query-string parsing and canonical re-encoding.

See docs/protocol.md, "Parsing the match tag".
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_QUERY_BYTES = 8192


@dataclass(frozen=True, slots=True)
class QueryParam:
    """One ``name[=value]`` pair; ``value is None`` for a valueless flag (``&google_cm``)."""

    name: str
    value: str | None


def parse_query(raw: bytes | str, *, max_bytes: int = MAX_QUERY_BYTES) -> tuple[QueryParam, ...]:
    """Parse a raw query string (without ``?``); raise QueryError on malformed input."""
    raise NotImplementedError


def encode_component(text: str) -> str:
    """Percent-encode a name or value: unreserved characters and ``,`` stay literal."""
    raise NotImplementedError


def encode_query(params: tuple[QueryParam, ...] | list[QueryParam]) -> str:
    """Re-encode parameters canonically, keeping valueless flags valueless."""
    raise NotImplementedError
