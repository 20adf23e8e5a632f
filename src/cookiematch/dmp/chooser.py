"""Which partners a page should sync: a decision returned as a value, a status per partner.

Partners are considered by priority (higher first; ties keep the configured order). A partner
is fired when it is enabled, used by the client, allowed by the privacy policy (``allow``: the
policy's ``SYNC`` decision for the partner's GVL vendor ID, docs/privacy.md), and this browser
has not synced with it within the partner's ``ttl_days``; at most ``limit`` per page. Each
partner the policy was asked about carries the policy's reason, allowed or not.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cookiematch.dmp.model import Client, Partner
from cookiematch.privacy.policy import Decision, Reason


class SyncStatus(enum.Enum):
    SYNC = "sync"  # a pixel is handed out
    FRESH = "fresh"  # synced within its TTL
    DISABLED = "disabled"
    NOT_FOR_CLIENT = "not_for_client"
    OVER_LIMIT = "over_limit"  # eligible, but the page already has its N pixels
    PRIVACY = "privacy"  # the privacy policy refuses it: ``reason`` says why


@dataclass(frozen=True, slots=True)
class PartnerStatus:
    partner: str
    status: SyncStatus
    reason: Reason | None = None  # the policy's reason, where the policy was asked


@dataclass(frozen=True, slots=True)
class SyncDecision:
    chosen: tuple[Partner, ...]
    statuses: tuple[PartnerStatus, ...]

    def status(self, partner_id: str) -> SyncStatus | None:
        return next((s.status for s in self.statuses if s.partner == partner_id), None)

    def reason(self, partner_id: str) -> Reason | None:
        return next((s.reason for s in self.statuses if s.partner == partner_id), None)

    def refused(self) -> dict[str, Reason]:
        """The partners the privacy policy refused, with its reasons."""
        return {
            s.partner: s.reason
            for s in self.statuses
            if s.status is SyncStatus.PRIVACY and s.reason is not None
        }


def by_priority(partners: Sequence[Partner]) -> tuple[Partner, ...]:
    """Higher priority first; a stable sort keeps the configured order among equals."""
    return tuple(sorted(partners, key=lambda p: -p.priority))


def choose(
    partners: Sequence[Partner],
    client: Client,
    synced_at: Mapping[str, float],
    *,
    now: float,
    limit: int,
    allow: Callable[[Partner], Decision],
) -> SyncDecision:
    """Decide the sync pixels of one page; ``partners`` already ordered by priority."""
    chosen: list[Partner] = []
    statuses: list[PartnerStatus] = []
    for partner in partners:
        reason: Reason | None = None
        if not partner.enabled:
            status = SyncStatus.DISABLED
        elif not client.uses(partner.id):
            status = SyncStatus.NOT_FOR_CLIENT
        elif not (decision := allow(partner)).allowed:
            status, reason = SyncStatus.PRIVACY, decision.reason
        elif now - synced_at.get(partner.id, float("-inf")) < partner.ttl_seconds:
            status, reason = SyncStatus.FRESH, decision.reason
        elif len(chosen) >= limit:
            status, reason = SyncStatus.OVER_LIMIT, decision.reason
        else:
            status, reason = SyncStatus.SYNC, decision.reason
            chosen.append(partner)
        statuses.append(PartnerStatus(partner.id, status, reason))
    return SyncDecision(tuple(chosen), tuple(statuses))
