"""What decoding untrusted JSON with msgspec can raise: ``msgspec.DecodeError`` (malformed, or
the wrong shape: ``ValidationError`` is one) and ``RecursionError`` (nested deeper than the
decoder goes, about 1,000 levels: a 2 KB body can do it). Every decoder of a request body or
an ingested record catches ``JSON_ERRORS``, so such a body is a clear 400, never a 500."""

from __future__ import annotations

import msgspec

__all__ = ["JSON_ERRORS", "TOO_DEEP", "describe"]

JSON_ERRORS: tuple[type[Exception], ...] = (msgspec.DecodeError, RecursionError)
TOO_DEEP = "JSON nested too deeply"


def describe(exc: Exception) -> str:
    """The reason to give for one of ``JSON_ERRORS``."""
    return TOO_DEEP if isinstance(exc, RecursionError) else str(exc)
