"""The identifiers the buyer handles: its own user IDs, Google user IDs, cookie versions.

- buyer uid: 16 random bytes; written (cookie value, ``google_hm``, admin API) as 22
  characters of unpadded URL-safe base64, the same canonical spelling as the exchange's IDs.
- gid: the ``google_gid`` string exactly as received (the document recommends storing it
  verbatim): 1-64 characters of unpadded URL-safe base64.
- cver: the ``google_cver`` decimal, 0 to 2^32-1.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cookiematch.errors import HostedMatchError
from cookiematch.protocol.cookies import format_browser_id, parse_browser_id
from cookiematch.protocol.hosted import decode_hosted_match

UID_BYTES = 16
MAX_GID_LENGTH = 64
MAX_CVER = 2**32 - 1

# Unpadded URL-safe base64: a length of 1 mod 4 cannot be produced by any byte string.
_GID_SHAPE = re.compile(r"[A-Za-z0-9_-]+")
_CVER_SHAPE = re.compile(r"[0-9]{1,10}")

NewUid = Callable[[], bytes]
"""Returns 16 fresh random bytes (``os.urandom(16)``); injected so tests are deterministic."""


def format_uid(uid: bytes) -> str:
    """The 22-character spelling of a buyer uid."""
    return format_browser_id(uid)


def parse_uid(text: str) -> bytes | None:
    """The 16-byte uid of a canonical 22-character spelling, else None."""
    return parse_browser_id(text)


def parse_gid(text: str | None) -> str | None:
    """``text`` if it is a plausible google_gid, else None (malformed or too long)."""
    if text is None or not 0 < len(text) <= MAX_GID_LENGTH or len(text) % 4 == 1:
        return None
    return text if _GID_SHAPE.fullmatch(text) is not None else None


def parse_cver(text: str | None) -> int | None:
    """The cookie version as an int, or None if missing or not a decimal up to 2^32-1."""
    if text is None or _CVER_SHAPE.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value <= MAX_CVER else None


def parse_hosted_uid(buyeruid: str | None) -> bytes | None:
    """The buyer uid carried by OpenRTB ``user.buyeruid``, or None.

    The exchange puts the hosted match data it stored (the raw bytes the buyer sent as
    ``google_hm``) into ``user.buyeruid`` as URL-safe base64, padding optional. This buyer
    only ever stores its 16-byte uid there; anything else (another bidder's format, bad
    base64, another length) is "no hosted data", never an error.
    """
    if not buyeruid:
        return None
    try:
        data = decode_hosted_match(buyeruid)
    except HostedMatchError:
        return None
    return data if len(data) == UID_BYTES else None
