"""How long the DMP keeps segment memberships and export state, and when a confirmed entry is
rewritten with a fresh lifetime.

Memberships (``dmp:{uid}:s``) live ``[dmp] membership_ttl_days`` from their
last write, export state (``dmpx:…``) ``export_state_ttl_days``. A recompute that finds a
membership still holding, and an export that finds a member's ID unchanged, rewrite the entry
once less than half its lifetime is left (``due``): an entry is rewritten about once per half
lifetime, not at every recompute, and one nothing confirms any more lapses on its own.

Export state outlives memberships (by ``EXPORT_STATE_MARGIN_DAYS`` by default; the
configuration refuses less), so a membership that lapsed is still removed from the
destination, with the ID it was sent, by the next export.
"""

from __future__ import annotations

from cookiematch.clock import SECONDS_PER_DAY

MEMBERSHIP_TTL_DAYS = 390
"""A membership's lifetime when none is configured: the DMP cookie's (``match_ttl_days``)."""
EXPORT_STATE_MARGIN_DAYS = 30
"""How much longer export state lives than memberships by default."""

MEMBERSHIP_TTL = MEMBERSHIP_TTL_DAYS * SECONDS_PER_DAY
EXPORT_STATE_TTL = (MEMBERSHIP_TTL_DAYS + EXPORT_STATE_MARGIN_DAYS) * SECONDS_PER_DAY


def due(remaining: float | None, lifetime: float) -> bool:
    """Whether an entry with ``remaining`` seconds to live is rewritten when confirmed: under
    half of ``lifetime`` left, or no expiry at all (written before these lifetimes existed)."""
    return remaining is None or remaining < lifetime / 2
