"""Cookie header parsing, reading an ID cookie, exchange browser IDs, Set-Cookie."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Protocol

from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.protocol.userid import BROWSER_ID_BYTES, b64url_nopad, b64url_nopad_decode

MAX_COOKIE_HEADER_BYTES = 8192
OPT_OUT_VALUE = "OPT_OUT"
BROWSER_ID_LENGTH = 22

# 22 characters carry 132 bits of which 128 are used: the last character's low 4 bits are 0.
_BROWSER_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")
# RFC 6265 token (cookie-name) and cookie-octet (value, unquoted).
_COOKIE_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_COOKIE_VALUE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_ATTRIBUTE_VALUE = re.compile(r"[\x20-\x3a\x3c-\x7e]*")
_SAME_SITE = frozenset({"None", "Lax", "Strict", ""})


def parse_cookie_header(header: str) -> dict[str, str]:
    """Lenient RFC 6265 parse; the first occurrence of a name wins; never raises.

    Pairs are split on ``;``, names and values stripped of whitespace, a value wrapped in
    double quotes is unwrapped; pieces without ``=`` or with an empty name are ignored.
    """
    cookies: dict[str, str] = {}
    if not isinstance(header, str):
        return cookies
    for piece in header.split(";"):
        name, eq, value = piece.partition("=")
        if not eq:
            continue
        name = name.strip()
        if not name or name in cookies:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        cookies[name] = value
    return cookies


class IdCookie(enum.Enum):
    """What :func:`read_id_cookie` found when it found no value to use."""

    ABSENT = "absent"  # no Cookie header, or no cookie of that name
    OPTED_OUT = "opted_out"  # the cookie holds OPT_OUT_VALUE: the browser opted out
    OVERSIZED = "oversized"  # the Cookie header is over MAX_COOKIE_HEADER_BYTES: not read


def read_id_cookie(header: str, name: str) -> str | IdCookie:
    """The value of the first cookie called ``name`` in a Cookie header (the rules of
    :func:`parse_cookie_header`), or why there is none to use.

    One call on the hot path: it scans for the one name, builds no dict, and answers the
    value string itself in the common case. The value is not checked here; the caller parses
    it (an ID of the wrong shape counts as no ID). A header over ``MAX_COOKIE_HEADER_BYTES``
    is not read at all: a browser does not send one honestly. ``OPT_OUT_VALUE`` is the
    exchange's opt-out (``GET /optout`` writes it); the roles without an opt-out cookie of
    their own read it as no ID.
    """
    if not header:
        return IdCookie.ABSENT
    if len(header) > MAX_COOKIE_HEADER_BYTES:
        return IdCookie.OVERSIZED
    if name not in header:
        return IdCookie.ABSENT
    for piece in header.split(";"):
        key, eq, value = piece.partition("=")
        if eq and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1]
            return IdCookie.OPTED_OUT if value == OPT_OUT_VALUE else value
    return IdCookie.ABSENT


def new_browser_id(random_bytes: bytes) -> bytes:
    """Validate 16 random bytes as a browser ID (kept separate so tests inject randomness)."""
    if not isinstance(random_bytes, bytes | bytearray) or len(random_bytes) != BROWSER_ID_BYTES:
        raise ValueError(f"a browser ID is {BROWSER_ID_BYTES} random bytes")
    return bytes(random_bytes)


def format_browser_id(browser_id: bytes) -> str:
    """22-char unpadded URL-safe base64."""
    if len(browser_id) != BROWSER_ID_BYTES:
        raise ValueError(f"a browser ID is {BROWSER_ID_BYTES} bytes")
    return b64url_nopad(browser_id)


def parse_browser_id(value: str) -> bytes | None:
    """The 16-byte ID, or None for anything that is not exactly a formatted ID."""
    if not isinstance(value, str) or _BROWSER_ID_SHAPE.fullmatch(value) is None:
        return None
    return b64url_nopad_decode(value)


@dataclass(frozen=True, slots=True)
class CookieSpec:
    """How a cookie is set: attributes that do not change per request."""

    name: str
    max_age: int = 13 * 30 * SECONDS_PER_DAY
    secure: bool = True
    http_only: bool = True
    same_site: str = "None"
    path: str = "/"
    domain: str | None = None
    _attributes_set: str = field(init=False, repr=False, compare=False)  # made once

    def __post_init__(self) -> None:
        if _COOKIE_NAME.fullmatch(self.name) is None:
            raise ValueError(f"{self.name!r} is not a valid cookie name")
        if self.max_age < 0:
            raise ValueError("max_age must not be negative")
        if self.same_site not in _SAME_SITE:
            raise ValueError(f"same_site must be one of {sorted(_SAME_SITE)}")
        for attribute in (self.path, self.domain or ""):
            if _ATTRIBUTE_VALUE.fullmatch(attribute) is None:
                raise ValueError(f"invalid cookie attribute value {attribute!r}")
        object.__setattr__(self, "_attributes_set", self._attributes(self.max_age))

    def _attributes(self, max_age: int) -> str:
        parts = [f"; Max-Age={max_age}"]
        if self.path:
            parts.append(f"; Path={self.path}")
        if self.domain:
            parts.append(f"; Domain={self.domain}")
        if self.secure:
            parts.append("; Secure")
        if self.http_only:
            parts.append("; HttpOnly")
        if self.same_site:
            parts.append(f"; SameSite={self.same_site}")
        return "".join(parts)

    def header(self, value: str) -> str:
        """The Set-Cookie header value; value must already be cookie-safe."""
        if _COOKIE_VALUE.fullmatch(value) is None:
            raise ValueError("cookie value contains characters not allowed in a cookie")
        return f"{self.name}={value}{self._attributes_set}"

    def expire_header(self) -> str:
        """A Set-Cookie header value that deletes the cookie (same Path and Domain)."""
        return f"{self.name}={self._attributes(0)}"


class CookieSettings(Protocol):
    """The cookie keys every role's configuration has (``cookie_name``, ``cookie_domain``,
    ``cookie_secure``, ``cookie_max_age_days``)."""

    @property
    def cookie_name(self) -> str: ...
    @property
    def cookie_domain(self) -> str | None: ...
    @property
    def cookie_secure(self) -> bool: ...
    @property
    def cookie_max_age_days(self) -> int: ...


def cookie_spec(settings: CookieSettings, *, same_site: str = "None") -> CookieSpec:
    """The ``CookieSpec`` a role's cookie keys describe."""
    return CookieSpec(
        name=settings.cookie_name,
        max_age=settings.cookie_max_age_days * SECONDS_PER_DAY,
        secure=settings.cookie_secure,
        same_site=same_site,
        domain=settings.cookie_domain,
    )
