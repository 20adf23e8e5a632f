"""Tamper-evident pixel-matching tokens (google_push). Construction: docs/protocol.md.

token = base64url_nopad(v:u8 || issued_at:u32 || C:16 || T:12)     33 bytes, 44 chars
C     = the buyer's encrypted browser ID (the AES block of its gid)
T     = HMAC-SHA256_{K_push}(nid || v || issued_at || C)[:12]
"""

from __future__ import annotations

import hmac
import re
import struct
from dataclasses import dataclass

from cookiematch.errors import InvalidPushToken
from cookiematch.protocol.userid import (
    BROWSER_ID_BYTES,
    HmacSha256,
    UserIdCipher,
    b64url_nopad,
    b64url_nopad_decode,
)

PUSH_TAG_BYTES = 12
PUSH_TOKEN_LENGTH = 44
# Tokens are issued by one exchange node and verified by another: tolerate this much skew
# between their clocks for a token that looks issued in the future.
MAX_CLOCK_SKEW_SECONDS = 60
_MAX_CACHED_BUYERS = 4096

_HEADER = struct.Struct(">BI")
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{44}")


@dataclass(frozen=True, slots=True)
class PushClaim:
    browser_id: bytes
    version: int
    issued_at: int


class PushTokens:
    """Issues and verifies ``google_push`` tokens; keys come from the gid cipher's secrets."""

    __slots__ = ("_cipher", "_macs", "_ttl")

    def __init__(self, cipher: UserIdCipher, *, ttl_seconds: int = 3600) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._cipher = cipher
        self._ttl = ttl_seconds
        self._macs: dict[tuple[str, int], HmacSha256] = {}

    @property
    def ttl_seconds(self) -> int:
        return self._ttl

    def _mac(self, nid: str, version: int) -> HmacSha256:
        mac = self._macs.get((nid, version))
        if mac is None:
            mac = HmacSha256(self._cipher.derive_key(version, "push", nid))
            if len(self._macs) >= _MAX_CACHED_BUYERS:
                self._macs.clear()
            self._macs[(nid, version)] = mac
        return mac

    @staticmethod
    def _message(nid: str, header: bytes, block: bytes) -> bytes:
        return nid.encode("utf-8", "surrogatepass") + header + block

    def issue(self, browser_id: bytes, nid: str, now: int) -> str:
        if not 0 <= now <= 0xFFFFFFFF:
            raise ValueError("now does not fit the token's 32-bit timestamp")
        version = self._cipher.current_version
        block = self._cipher.encrypt_block(browser_id, nid, version)
        header = _HEADER.pack(version, now)
        tag = self._mac(nid, version).digest(self._message(nid, header, block))
        return b64url_nopad(header + block + tag[:PUSH_TAG_BYTES])

    def verify(self, token: str, nid: str, now: int) -> PushClaim:
        """Raise InvalidPushToken when malformed, forged, expired or for another buyer."""
        if not isinstance(token, str) or _TOKEN_SHAPE.fullmatch(token) is None:
            raise InvalidPushToken("google_push is not a 44-character URL-safe base64 string")
        data = b64url_nopad_decode(token)
        version, issued_at = _HEADER.unpack_from(data)
        if not self._cipher.has_version(version):
            raise InvalidPushToken("google_push was issued under an unknown key version")
        header = data[: _HEADER.size]
        block = data[_HEADER.size : _HEADER.size + BROWSER_ID_BYTES]
        tag = self._mac(nid, version).digest(self._message(nid, header, block))
        if not hmac.compare_digest(tag[:PUSH_TAG_BYTES], data[_HEADER.size + BROWSER_ID_BYTES :]):
            raise InvalidPushToken("google_push does not verify for this buyer")
        age = now - issued_at
        if age >= self._ttl:
            raise InvalidPushToken("google_push has expired")
        if age < -MAX_CLOCK_SKEW_SECONDS:
            raise InvalidPushToken("google_push is issued in the future")
        return PushClaim(
            browser_id=self._cipher.decrypt_block(block, nid, version),
            version=version,
            issued_at=issued_at,
        )
