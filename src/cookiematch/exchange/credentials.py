"""Buyers' API credentials: tokens the exchange generates, kept only as their SHA-256.

A token is ``TOKEN_PREFIX`` + 32 random bytes in URL-safe base64 (``secrets``): 256 bits, so
a plain SHA-256 at rest is enough (a slow KDF protects guessable passwords; nobody guesses
2^256). It is shown once, when it is created. A presented token is hashed and looked up by
its hash (timing reveals nothing about a token from a lookup of its hash), then the hashes are
compared in constant time. A credential counts only while its buyer exists.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cookiematch.exchange.model import Credential, Scopes
from cookiematch.exchange.registry import ExchangeRegistry

__all__ = ["TOKEN_PREFIX", "authenticate", "new_credential", "token_sha256"]

TOKEN_PREFIX = "cmk_"
TOKEN_BYTES = 32


def token_sha256(token: str) -> str:
    """The hex SHA-256 of a token, as a credential keeps it."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_credential(
    nid: str, scopes: Scopes, created_at: float | None = None
) -> tuple[str, Credential]:
    """A new token and the credential that recognises it (which does not hold it)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    return token, Credential(nid, token_sha256(token), scopes, created_at)


def authenticate(registry: ExchangeRegistry, token: str) -> Credential | None:
    """The credential of ``token``, or None (unknown, revoked, or its buyer deleted)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    digest = token_sha256(token)
    found = registry.credential_by_hash(digest)
    if found is None or not hmac.compare_digest(found.token_sha256, digest):
        return None
    return found if registry.buyer(found.nid) is not None else None
