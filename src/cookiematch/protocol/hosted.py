"""Decoding of ``google_hm`` hosted match data."""

from __future__ import annotations

import binascii
import re

from cookiematch.errors import HostedMatchError
from cookiematch.protocol.codes import HostedMatchStatus

MAX_HOSTED_MATCH_BYTES = 24

# URL-safe alphabet, then at most two '=' of padding.
_SHAPE = re.compile(r"([A-Za-z0-9_-]*)(=?=?)")
_TO_STANDARD = str.maketrans("-_", "+/")
_DECODE_ERROR = int(HostedMatchStatus.DECODE_ERROR)
_TOO_LONG = int(HostedMatchStatus.TOO_LONG)


def decode_hosted_match(value: str) -> bytes:
    """URL-safe base64, padding optional; raise HostedMatchError(status 2 or 3).

    Strict: only ``A-Z a-z 0-9 - _``; padding, if present, must make the length a multiple
    of 4; the unused low bits of the last character must be zero (one encoding per value);
    an empty value is a decode error (there is nothing to store).
    """
    match = _SHAPE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise HostedMatchError("google_hm is not URL-safe base64", _DECODE_ERROR)
    data, padding = match.groups()
    if not data or len(data) % 4 == 1 or (padding and (len(data) + len(padding)) % 4):
        raise HostedMatchError("google_hm is not URL-safe base64", _DECODE_ERROR)
    encoded = data.translate(_TO_STANDARD) + "=" * (-len(data) % 4)
    decoded = binascii.a2b_base64(encoded)
    if binascii.b2a_base64(decoded, newline=False).decode("ascii") != encoded:
        # non-zero unused bits: a second spelling of the same bytes
        raise HostedMatchError("google_hm is not canonical base64", _DECODE_ERROR)
    if len(decoded) > MAX_HOSTED_MATCH_BYTES:
        raise HostedMatchError(
            f"google_hm decodes to more than {MAX_HOSTED_MATCH_BYTES} bytes",
            _TOO_LONG,
        )
    return decoded
