"""The console's session: who logged in, until when, and the CSRF token of its forms, in one
signed cookie (never the token that logged in).

    cookie value = base64url(JSON {party, scopes, credential, expires, csrf}) "." base64url(MAC)
    MAC          = HMAC-SHA256(key, payload), key = HMAC-SHA256(admin token, SESSION_CONTEXT)

Any worker of any server with the same admin token reads it, no store round trip; changing
the admin token ends every session. The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Secure``
when the console is reached over https, and limited to ``/console``. Logging out clears it in
the browser (a copied cookie stays valid until it expires: keep ``session_minutes`` short).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

import msgspec

from cookiematch.clock import Clock
from cookiematch.protocol.cookies import CookieSpec, parse_cookie_header
from cookiematch.protocol.userid import b64url_nopad
from cookiematch.web.admin import Principal
from cookiematch.web.csrf import new_token

__all__ = ["COOKIE_NAME", "LOGIN_COOKIE_NAME", "PATH", "Session", "Sessions"]

PATH = "/console"
COOKIE_NAME = "cm_console"
LOGIN_COOKIE_NAME = "cm_console_login"  # the login form's own CSRF token
SESSION_CONTEXT = b"cookiematch console session v1"
MAX_COOKIE_CHARS = 2048  # a longer value is not read


class _Payload(msgspec.Struct, frozen=True):
    party: str | None
    scopes: list[str]
    credential: str | None
    expires: float
    csrf: str


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in console user: its ``principal`` and the token its forms carry."""

    principal: Principal
    expires: float
    csrf: str


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issues and reads the session cookie of one role's console."""

    def __init__(self, admin_token: str, *, lifetime_seconds: float, clock: Clock) -> None:
        self._key = hmac.new(admin_token.encode(), SESSION_CONTEXT, hashlib.sha256).digest()
        self._lifetime = lifetime_seconds
        self._clock = clock

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def cookie(
        self, secure: bool, *, name: str = COOKIE_NAME, max_age: int | None = None
    ) -> CookieSpec:
        lifetime = int(self._lifetime) if max_age is None else max_age
        return CookieSpec(
            name=name,
            max_age=lifetime,
            secure=secure,
            http_only=True,
            same_site="Strict",
            path=PATH,
        )

    def issue(self, principal: Principal) -> tuple[str, Session]:
        """A new session of ``principal``: the cookie's value and the session."""
        session = Session(principal, self._clock() + self._lifetime, new_token())
        payload = msgspec.json.encode(
            _Payload(
                principal.party,
                sorted(principal.scopes),
                principal.credential,
                session.expires,
                session.csrf,
            )
        )
        value = f"{b64url_nopad(payload)}.{b64url_nopad(self._mac(payload))}"
        return value, session

    def read(self, cookie_header: str) -> Session | None:
        """The session of a request's ``Cookie`` header; None when absent, forged, expired
        or unreadable."""
        value = parse_cookie_header(cookie_header).get(COOKIE_NAME, "")
        encoded, dot, mac = value.partition(".")
        if not dot or len(value) > MAX_COOKIE_CHARS:
            return None
        try:
            payload, presented = _unb64(encoded), _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(presented, self._mac(payload)):
            return None
        try:
            found = msgspec.json.decode(payload, type=_Payload)
        except msgspec.DecodeError:
            return None
        if found.expires <= self._clock():
            return None
        principal = Principal(found.party, frozenset(found.scopes), found.credential)
        return Session(principal, found.expires, found.csrf)
