"""Decoding of ``google_hm`` hosted match data."""

from __future__ import annotations

MAX_HOSTED_MATCH_BYTES = 24


def decode_hosted_match(value: str) -> bytes:
    """URL-safe base64, padding optional; raise HostedMatchError(status 2 or 3)."""
    raise NotImplementedError
