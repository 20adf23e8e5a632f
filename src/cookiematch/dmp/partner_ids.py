"""Signed and encrypted partner IDs: what a partner sends on the callback, and its check.

Both formats bind the ID to the partner (a key per partner, the partner ID in the MAC or as
AES-GCM associated data) and to a time, so a captured callback cannot be replayed forever:

    signed     "<uid>.<unix seconds>.<sig>"   sig = base64url(HMAC-SHA256(key,
                                                "<partner>.<uid>.<unix seconds>")), no padding
    encrypted  base64url(nonce(12) || AES-256-GCM(key, nonce, "<unix seconds>.<uid>",
                                                 aad="<partner>")), no padding

A value older than the partner's ``id_max_age_seconds`` (or more than 5 minutes in the future)
is refused like a forged one. ``seal`` is the partner's side, used by the tests and the demo.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cookiematch.dmp.model import IdFormat, Partner

MAX_PARTNER_UID_LENGTH = 256
CLOCK_SKEW_SECONDS = 300
_NONCE_BYTES = 12
_PLAIN_UID = re.compile(rf"[\x21-\x7e]{{1,{MAX_PARTNER_UID_LENGTH}}}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def valid_uid(uid: str) -> bool:
    """1-256 printable ASCII characters, no space."""
    return _PLAIN_UID.fullmatch(uid) is not None


class PartnerIdReader:
    """Opens the IDs one partner sends; built once per partner (the AES object is reused)."""

    def __init__(self, partner: Partner) -> None:
        self.partner = partner
        self._aes: AESGCM | None = None
        if partner.id_format is not IdFormat.PLAIN and partner.id_key is None:
            raise ValueError(f"partner {partner.id!r} needs an id_key for {partner.id_format}")
        if partner.id_format is IdFormat.ENCRYPTED and partner.id_key is not None:
            self._aes = AESGCM(partner.id_key)

    def open(self, value: str, now: float) -> str | None:
        """The partner's plain ID, or None when the value is malformed, forged or stale."""
        fmt = self.partner.id_format
        if fmt is IdFormat.PLAIN:
            return value if valid_uid(value) else None
        if fmt is IdFormat.SIGNED:
            uid, ts = self._open_signed(value)
        else:
            uid, ts = self._open_encrypted(value)
        if uid is None or ts is None or not valid_uid(uid):
            return None
        if not now - self.partner.id_max_age_seconds <= ts <= now + CLOCK_SKEW_SECONDS:
            return None
        return uid

    def _open_signed(self, value: str) -> tuple[str | None, int | None]:
        uid, dot1, rest = value.rpartition(".")
        uid, dot2, ts = uid.rpartition(".")
        if not (dot1 and dot2 and ts.isascii() and ts.isdigit() and len(ts) <= 12):
            return None, None
        assert self.partner.id_key is not None
        expected = _signature(self.partner.id_key, self.partner.id, uid, ts)
        if not hmac.compare_digest(rest.encode("ascii", "replace"), expected.encode()):
            return None, None
        return uid, int(ts)

    def _open_encrypted(self, value: str) -> tuple[str | None, int | None]:
        assert self._aes is not None
        if len(value) > 4 * MAX_PARTNER_UID_LENGTH:
            return None, None
        raw = _unb64(value) if value.isascii() else None
        if raw is None or len(raw) <= _NONCE_BYTES + 16:
            return None, None
        try:
            plain = self._aes.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self.partner.id.encode()
            )
            ts, dot, uid = plain.decode("utf-8").partition(".")
        except (InvalidTag, UnicodeDecodeError):
            return None, None
        if not (dot and ts.isascii() and ts.isdigit() and len(ts) <= 12):
            return None, None
        return uid, int(ts)


def _signature(key: bytes, partner_id: str, uid: str, ts: str) -> str:
    message = f"{partner_id}.{uid}.{ts}".encode()
    return _b64(hmac.new(key, message, hashlib.sha256).digest())


def seal(partner: Partner, uid: str, now: float, *, nonce: bytes | None = None) -> str:
    """What the partner puts in place of the uid macro (the partner's side of the format)."""
    ts = str(int(now))
    if partner.id_format is IdFormat.PLAIN:
        return uid
    if partner.id_key is None:
        raise ValueError(f"partner {partner.id!r} has no id_key")
    if partner.id_format is IdFormat.SIGNED:
        return f"{uid}.{ts}.{_signature(partner.id_key, partner.id, uid, ts)}"
    nonce = nonce if nonce is not None else os.urandom(_NONCE_BYTES)
    sealed = AESGCM(partner.id_key).encrypt(nonce, f"{ts}.{uid}".encode(), partner.id.encode())
    return _b64(nonce + sealed)
