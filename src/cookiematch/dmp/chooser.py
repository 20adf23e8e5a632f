"""Which partners a page should sync: a decision returned as a value, a status per partner.

Partners are considered by priority (higher first; ties keep the configured order). A partner
is fired when it is enabled, used by the client, the privacy signals allow syncing, and this
browser has not synced with it within the partner's ``ttl_days``; at most ``limit`` per page.
Privacy: with ``gdpr=1`` and no consent string, or a CCPA sale opt-out (``us_privacy`` "1-Y-"),
no partner is synced.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cookiematch.dmp.model import Client, Partner
from cookiematch.protocol.privacy import PrivacySignals


class SyncStatus(enum.Enum):
    SYNC = "sync"  # a pixel is handed out
    FRESH = "fresh"  # synced within its TTL
    DISABLED = "disabled"
    NOT_FOR_CLIENT = "not_for_client"
    OVER_LIMIT = "over_limit"  # eligible, but the page already has its N pixels
    NO_CONSENT = "no_consent"  # gdpr=1 without a consent string
    OPTED_OUT = "opted_out"  # CCPA opt-out of sale


@dataclass(frozen=True, slots=True)
class PartnerStatus:
    partner: str
    status: SyncStatus


@dataclass(frozen=True, slots=True)
class SyncDecision:
    chosen: tuple[Partner, ...]
    statuses: tuple[PartnerStatus, ...]

    def status(self, partner_id: str) -> SyncStatus | None:
        return next((s.status for s in self.statuses if s.partner == partner_id), None)


def by_priority(partners: Sequence[Partner]) -> tuple[Partner, ...]:
    """Higher priority first; a stable sort keeps the configured order among equals."""
    return tuple(sorted(partners, key=lambda p: -p.priority))


def _privacy_block(privacy: PrivacySignals) -> SyncStatus | None:
    if privacy.gdpr_applies and not privacy.gdpr_consent:
        return SyncStatus.NO_CONSENT
    if privacy.sale_opted_out:
        return SyncStatus.OPTED_OUT
    return None


def choose(
    partners: Sequence[Partner],
    client: Client,
    synced_at: Mapping[str, float],
    *,
    now: float,
    limit: int,
    privacy: PrivacySignals,
) -> SyncDecision:
    """Decide the sync pixels of one page; ``partners`` already ordered by priority."""
    blocked = _privacy_block(privacy)
    chosen: list[Partner] = []
    statuses: list[PartnerStatus] = []
    for partner in partners:
        if not partner.enabled:
            status = SyncStatus.DISABLED
        elif not client.uses(partner.id):
            status = SyncStatus.NOT_FOR_CLIENT
        elif blocked is not None:
            status = blocked
        elif now - synced_at.get(partner.id, float("-inf")) < partner.ttl_seconds:
            status = SyncStatus.FRESH
        elif len(chosen) >= limit:
            status = SyncStatus.OVER_LIMIT
        else:
            status = SyncStatus.SYNC
            chosen.append(partner)
        statuses.append(PartnerStatus(partner.id, status))
    return SyncDecision(tuple(chosen), tuple(statuses))
