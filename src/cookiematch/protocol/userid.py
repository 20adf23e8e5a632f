"""Buyer-specific encrypted user IDs (google_gid). Construction: docs/protocol.md."""

from __future__ import annotations

from collections.abc import Mapping

BROWSER_ID_BYTES = 16


class UserIdCipher:
    """Encrypts browser IDs into per-buyer gids and back. Keys: version -> 32-byte secret.

    Per-(buyer, version) AES and HMAC objects are derived once and cached.
    """

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        raise NotImplementedError

    @property
    def current_version(self) -> int:
        raise NotImplementedError

    def encrypt_block(self, browser_id: bytes, nid: str, version: int) -> bytes:
        """C: the 16-byte AES block of the browser ID under the buyer's key."""
        raise NotImplementedError

    def decrypt_block(self, block: bytes, nid: str, version: int) -> bytes:
        raise NotImplementedError

    def encrypt(self, browser_id: bytes, nid: str, version: int | None = None) -> str:
        """The gid (27 chars) for this browser and buyer; current version by default."""
        raise NotImplementedError

    def decrypt(self, gid: str, nid: str, version: int) -> bytes:
        """The browser ID; raise InvalidUserId when malformed, forged or version unknown."""
        raise NotImplementedError

    def derive_key(self, version: int, purpose: str, nid: str) -> bytes:
        """HKDF-SHA256 sub-key of key ``version`` for a purpose ("enc", "mac", "push")."""
        raise NotImplementedError
