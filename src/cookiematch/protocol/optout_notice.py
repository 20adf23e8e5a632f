"""The opt-out notice an exchange sends a buyer server to server, and its signature.

    POST <the buyer's optout_webhook_url>
    Content-Type: application/json
    Cookiematch-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

    {"type": "optout", "id": "<notice id>", "nid": "<buyer network id>",
     "google_gids": ["<gid under the current key>", "<gid under an older key>", …],
     "time": <unix seconds of the opt-out>}

``google_gids`` holds the browser's gid for this buyer under every key version the exchange
still decrypts (current first), so a buyer that matched before a key rotation finds its entry.
The signature covers the timestamp and the exact body bytes (as Stripe's and UID2's webhooks
do); a receiver refuses a signature older or newer than ``MAX_SKEW_SECONDS`` (replay), and
answers 2xx once it has erased, which ends the exchange's retries. ``id`` is the same on every
retry of one notice: a receiver may use it to ignore repeats (erasing twice is harmless).
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec

__all__ = [
    "MAX_SKEW_SECONDS",
    "SIGNATURE_HEADER",
    "OptOutNotice",
    "decode_notice",
    "encode_notice",
    "sign",
    "verify",
]

SIGNATURE_HEADER = "Cookiematch-Signature"
MAX_SKEW_SECONDS = 300
MAX_NOTICE_BYTES = 4096
_VERSION = "v1"


class OptOutNotice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """One browser opted out at the exchange: erase what is matched to these gids."""

    type: str = "optout"
    id: str
    nid: str
    google_gids: list[str]
    time: int


_decoder = msgspec.json.Decoder(OptOutNotice)


def encode_notice(notice: OptOutNotice) -> bytes:
    return msgspec.json.encode(notice)


def decode_notice(body: bytes) -> OptOutNotice | None:
    """The notice, or None for a body that is not one (too large, not JSON, wrong shape)."""
    if len(body) > MAX_NOTICE_BYTES:
        return None
    try:
        notice = _decoder.decode(body)
    except msgspec.DecodeError:
        return None
    return notice if notice.type == "optout" and notice.google_gids else None


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``Cookiematch-Signature`` header value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},{_VERSION}={_mac(secret, timestamp, body)}"


def verify(secret: bytes, body: bytes, header: str | None, now: float) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``MAX_SKEW_SECONDS`` of ``now``."""
    if not header or not secret:
        return False
    parts = dict(piece.strip().partition("=")[::2] for piece in header.split(","))
    stamp, presented = parts.get("t", ""), parts.get(_VERSION, "")
    if not stamp.isdigit() or len(stamp) > 12 or not presented:
        return False
    timestamp = int(stamp)
    if abs(now - timestamp) > MAX_SKEW_SECONDS:
        return False
    return hmac.compare_digest(presented.encode(), _mac(secret, timestamp, body).encode())
