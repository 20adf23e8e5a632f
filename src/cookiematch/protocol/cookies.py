"""Cookie header parsing, exchange browser IDs, and Set-Cookie construction."""

from __future__ import annotations

from dataclasses import dataclass

MAX_COOKIE_HEADER_BYTES = 8192
OPT_OUT_VALUE = "OPT_OUT"


def parse_cookie_header(header: str) -> dict[str, str]:
    """Lenient RFC 6265 parse; the first occurrence of a name wins; never raises."""
    raise NotImplementedError


def new_browser_id(random_bytes: bytes) -> bytes:
    """Validate 16 random bytes as a browser ID (kept separate so tests inject randomness)."""
    raise NotImplementedError


def format_browser_id(browser_id: bytes) -> str:
    """22-char unpadded URL-safe base64."""
    raise NotImplementedError


def parse_browser_id(value: str) -> bytes | None:
    """The 16-byte ID, or None for anything that is not exactly a formatted ID."""
    raise NotImplementedError


@dataclass(frozen=True, slots=True)
class CookieSpec:
    """How a cookie is set: attributes that do not change per request."""

    name: str
    max_age: int = 13 * 30 * 86400
    secure: bool = True
    http_only: bool = True
    same_site: str = "None"
    path: str = "/"
    domain: str | None = None

    def header(self, value: str) -> str:
        """The Set-Cookie header value; value must already be cookie-safe."""
        raise NotImplementedError

    def expire_header(self) -> str:
        raise NotImplementedError
