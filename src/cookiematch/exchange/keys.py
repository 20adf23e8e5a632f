"""Store keys of the exchange. A browser's keys share a ``{hash tag}`` (one cluster node)."""

from __future__ import annotations

import binascii

_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def browser_tag(browser_id: bytes) -> str:
    """``{`` the ID in unpadded base64url ``}`` (``binascii`` directly: the frequency checks
    compute one per new browser record)."""
    encoded = binascii.b2a_base64(browser_id, newline=False).translate(_TO_URLSAFE)
    return "{" + encoded.rstrip(b"=").decode() + "}"


def hosted_match_key(browser_id: bytes, nid: str) -> str:
    """Hosted match data a buyer stored for a browser."""
    return f"hm:{browser_tag(browser_id)}:{nid}"


def user_lists_key(browser_id: bytes) -> str:
    """Field map: user list id -> time the browser was added (unix seconds, ASCII)."""
    return f"ul:{browser_tag(browser_id)}"


def pixel_matches_key(browser_id: bytes) -> str:
    """Field map: buyer nid -> time a pixel match was recorded (unix seconds, ASCII)."""
    return f"pm:{browser_tag(browser_id)}"


def push_return_key(browser_id: bytes, nid: str) -> str:
    """The issue time (unix seconds, ASCII) of the last push token a buyer returned for a
    browser, kept for that token's remaining lifetime: a second return of it, or the return
    of a token issued earlier, is refused."""
    return f"pu:{browser_tag(browser_id)}:{nid}"
