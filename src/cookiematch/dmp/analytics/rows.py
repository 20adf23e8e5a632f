"""One profile as the analytics engine holds it: each value with the time it lapses.

The key-value store keeps a browser's data in field maps whose fields expire one by one
(``dmp/keys.py``); the engine keeps the same data as rows, each with its ``expires_at`` (Unix
seconds; None: never). ``snapshot_at`` is what the key-value store would answer at ``now``:
the live rows, each event name cut to its newest ``max_events_per_name`` live timestamps (as
``ProfileReader`` returns them), and None once the profile itself has lapsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cookiematch.dmp.snapshot import AttributeValue, ProfileSnapshot


def live(expires_at: float | None, now: float) -> bool:
    """Whether a row that lapses at ``expires_at`` still counts at ``now``."""
    return expires_at is None or expires_at > now


@dataclass(frozen=True, slots=True)
class AttributeRow:
    value: AttributeValue
    set_at: float | None = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class EventRow:
    name: str
    ts: float
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class ExposureRow:
    """An impression-pixel tally (``dmp/events.py``)."""

    kind: str  # "imp" | "click" | "conv"
    campaign: str
    count: int
    site: str = "-"
    creative: str = "-"
    first_at: float | None = None
    last_at: float | None = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class SyncRow:
    partner_uid: str
    synced_at: float | None = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class ConsentRow:
    """A consent mark (``dmp/consent.py``) of one party: ``*``, a partner id or ``v:<id>``."""

    decided_at: float
    tc_last_updated: float | None
    refused: bool = False
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class MembershipRow:
    """A segment membership as last written to the key-value store: when the browser joined,
    and when its entry was last written (None: an entry without expiry)."""

    joined_at: float
    written_at: float | None


@dataclass(frozen=True, slots=True)
class ProfileRows:
    """A browser's profile. ``expires_at``: when the last of its data lapses (its key-value
    maps, in-band data included), None for never."""

    dmp_uid: str
    expires_at: float | None = None
    attributes: dict[str, AttributeRow] = field(default_factory=dict)
    events: tuple[EventRow, ...] = ()
    exposures: tuple[ExposureRow, ...] = ()
    syncs: dict[str, SyncRow] = field(default_factory=dict)  # partner id -> sync
    consent: dict[str, ConsentRow] = field(default_factory=dict)  # party -> mark
    memberships: dict[str, MembershipRow] = field(default_factory=dict)  # segment -> entry


def snapshot_at(
    profile: ProfileRows, now: float, max_events_per_name: int
) -> ProfileSnapshot | None:
    """What a segment rule sees of ``profile`` at ``now`` (None: the profile has lapsed)."""
    if not live(profile.expires_at, now):
        return None
    stamps: dict[str, set[float]] = {}
    for event in profile.events:
        if live(event.expires_at, now):
            stamps.setdefault(event.name, set()).add(event.ts)
    exposures: dict[str, dict[str, int]] = {}
    for tally in profile.exposures:
        if live(tally.expires_at, now):
            by_campaign = exposures.setdefault(tally.kind, {})
            by_campaign[tally.campaign] = by_campaign.get(tally.campaign, 0) + tally.count
    return ProfileSnapshot(
        profile.dmp_uid,
        attributes={
            name: row.value for name, row in profile.attributes.items() if live(row.expires_at, now)
        },
        events={
            name: tuple(sorted(found, reverse=True)[:max_events_per_name])
            for name, found in stamps.items()
        },
        exposures=exposures,
        partners={
            partner: row.partner_uid
            for partner, row in profile.syncs.items()
            if live(row.expires_at, now)
        },
    )
