"""Cross-site request forgery checks shared by the pages that change something (the opt-out
page, the operator console).

A genuine ``POST`` carries a token twice ("double submit"): in a hidden form field and in a
``SameSite=Strict`` cookie (the opt-out page's own cookie, or the console's signed session),
which a browser sends only on requests its own site started. ``Sec-Fetch-Site`` and
``Origin``, when the browser sends them, must also say the request came from this site.
"""

from __future__ import annotations

import hmac
import os

from cookiematch.protocol.userid import b64url_nopad

__all__ = ["new_token", "same_site", "tokens_match"]

TOKEN_BYTES = 16


def new_token() -> str:
    """A fresh unguessable token (base64url, no padding)."""
    return b64url_nopad(os.urandom(TOKEN_BYTES))


def tokens_match(presented: str, expected: str) -> bool:
    """Does the form's token equal the cookie's? Never when either is empty."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def same_site(sec_fetch_site: str | None, origin: str | None, host: str | None) -> bool:
    """Do the request's ``Sec-Fetch-Site`` and ``Origin`` (each when sent) say it came from
    this site? ``Origin: scheme://host[:port]`` must name ``Host`` (the scheme may be
    rewritten by a TLS-terminating proxy; the host is not)."""
    if sec_fetch_site is not None and sec_fetch_site not in ("same-origin", "none"):
        return False
    if origin is None:
        return True
    _, sep, authority = origin.partition("://")
    return bool(sep) and host is not None and authority.lower() == host.strip().lower()
