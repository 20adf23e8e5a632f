"""HMAC-SHA256 signatures of export batches (docs/dmp-data.md, "Verifying a batch").

    X-Cookiematch-Timestamp: <unix seconds>
    X-Cookiematch-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

A receiver recomputes the MAC over the raw body bytes, compares in constant time, and refuses
a timestamp more than ``TOLERANCE_SECONDS`` away from its clock (replay).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Cookiematch-Timestamp"
SIGNATURE_HEADER = "X-Cookiematch-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TOLERANCE_SECONDS = 300
VERSION = "v1"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"{VERSION}={mac.hexdigest()}"


def sign(secret: bytes, body: bytes, now: float) -> dict[str, str]:
    """The two headers for ``body`` at ``now``."""
    timestamp = int(now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: float = TOLERANCE_SECONDS,
) -> bool:
    """True if the headers sign ``body`` with ``secret`` at a time close enough to ``now``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_time = lowered.get(TIMESTAMP_HEADER.lower(), "")
    presented = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not raw_time.isdigit() or abs(now - int(raw_time)) > tolerance:
        return False
    expected = signature(secret, int(raw_time), body)
    return any(hmac.compare_digest(expected, part.strip()) for part in presented.split(","))
