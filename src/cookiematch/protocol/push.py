"""Tamper-evident pixel-matching tokens (google_push). Construction: docs/protocol.md."""

from __future__ import annotations

from dataclasses import dataclass

from cookiematch.protocol.userid import UserIdCipher


@dataclass(frozen=True, slots=True)
class PushClaim:
    browser_id: bytes
    version: int
    issued_at: int


class PushTokens:
    def __init__(self, cipher: UserIdCipher, *, ttl_seconds: int = 3600) -> None:
        raise NotImplementedError

    def issue(self, browser_id: bytes, nid: str, now: int) -> str:
        raise NotImplementedError

    def verify(self, token: str, nid: str, now: int) -> PushClaim:
        """Raise InvalidPushToken when malformed, forged, expired or for another buyer."""
        raise NotImplementedError
