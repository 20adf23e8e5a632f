"""What the Cookie Matching Service decided for one match tag, as values (no HTTP)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RedirectToBuyer:
    """302 to the buyer's configured URL. ``error`` is the google_error sent, if any;
    ``privacy_refused`` says it was sent because the privacy policy refused the tag,
    ``push_replayed`` because the push token had already been returned; ``limited``: over
    the buyer's match-tag rate, nothing was done (docs/protocol.md)."""

    nid: str
    location: str
    error: int | None = None
    extras_dropped: bool = False
    hosted_match_status: int | None = None
    privacy_refused: bool = False
    push_replayed: bool = False
    limited: bool = False


@dataclass(frozen=True, slots=True)
class VerifyCookie:
    """Set a new exchange cookie and redirect to the same tag to see whether it comes back."""

    nid: str
    browser_id: bytes
    query: str  # the match tag's parameters, re-encoded, plus google_tc


@dataclass(frozen=True, slots=True)
class PushRecorded:
    """The return leg of pixel matching was valid: the match is recorded; answer a pixel."""

    nid: str
    stored: bool


MatchOutcome = RedirectToBuyer | VerifyCookie | PushRecorded
