"""A browser's DMP profile as one read model: partner IDs, events, in-band data, segments,
ingested traits and GDPR consent marks."""

from __future__ import annotations

import asyncio
from typing import Protocol

import msgspec

from cookiematch.dmp.consent import ConsentMarks, ProfileConsent
from cookiematch.dmp.events import EventLog
from cookiematch.dmp.inband import InbandData
from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.segments.membership import Memberships
from cookiematch.dmp.snapshot import AttributeValue


class ProfileEvent(msgspec.Struct, frozen=True):
    event: str
    campaign: str
    site: str
    creative: str
    count: int
    first: float
    last: float


class Profile(msgspec.Struct, frozen=True):
    """What ``GET /admin/v1/profiles/<dmp uid>`` answers."""

    dmp_uid: str
    partners: dict[str, str]
    synced_at: dict[str, float]
    events: list[ProfileEvent]
    inband: dict[str, dict[str, str]]
    segments: list[str] = []  # segment ids (dmp/segments/)
    attributes: dict[str, AttributeValue] = {}  # ingested traits (dmp/traits/)
    ingested_events: dict[str, list[float]] = {}  # event name -> timestamps, newest first
    # GDPR consent marks (dmp/consent.py); left out of the JSON when there are none
    consent: ProfileConsent | msgspec.UnsetType = msgspec.UNSET

    @property
    def empty(self) -> bool:
        return not (
            self.partners
            or self.events
            or self.inband
            or self.segments
            or self.attributes
            or self.ingested_events
            or self.consent is not msgspec.UNSET
        )


class TraitSource(Protocol):
    """Where a profile's traits are read: the key-value store (``ProfileReader``) or the
    analytics engine when it owns them (``dmp/analytics/lookup.py``)."""

    async def traits(
        self, dmp_uid: str
    ) -> tuple[dict[str, AttributeValue], dict[str, tuple[float, ...]]]: ...


class Profiles:
    """Assembles profiles from the match table, the event log and the in-band data."""

    def __init__(
        self,
        matches: MatchTable,
        events: EventLog,
        inband: InbandData,
        memberships: Memberships | None = None,
        reader: TraitSource | None = None,
        consent: ConsentMarks | None = None,
    ) -> None:
        self._matches = matches
        self._consent = consent
        self._events = events
        self._inband = inband
        self._memberships = memberships
        self._reader = reader

    async def get(self, dmp_uid: str, *, traits: bool = True) -> Profile:
        """The browser's profile (``traits``: with its attributes and ingested events; the
        per-request audiences read none)."""
        matches, tallies, inband, segments, (attributes, ingested), consent = await asyncio.gather(
            self._matches.partners(dmp_uid),
            self._events.tallies(dmp_uid),
            self._inband.get(dmp_uid),
            self._segments(dmp_uid),
            self._traits(dmp_uid) if traits else _no_traits(),
            self._consent_of(dmp_uid),
        )
        events = [
            ProfileEvent(e.event.value, e.campaign, e.site, e.creative, t.count, t.first, t.last)
            for e, t in sorted(tallies.items(), key=lambda item: item[0].field)
        ]
        return Profile(
            dmp_uid=dmp_uid,
            partners={p: m.uid for p, m in sorted(matches.items())},
            synced_at={p: m.at for p, m in sorted(matches.items())},
            events=events,
            inband=inband,
            segments=segments,
            attributes=attributes,
            ingested_events={name: list(stamps) for name, stamps in ingested.items()},
            consent=consent,
        )

    async def _consent_of(self, dmp_uid: str) -> ProfileConsent | msgspec.UnsetType:
        if self._consent is None:
            return msgspec.UNSET
        found = await self._consent.get(dmp_uid)
        return msgspec.UNSET if found.empty else found

    async def _traits(
        self, dmp_uid: str
    ) -> tuple[dict[str, AttributeValue], dict[str, tuple[float, ...]]]:
        if self._reader is None:
            return {}, {}
        return await self._reader.traits(dmp_uid)

    async def _segments(self, dmp_uid: str) -> list[str]:
        if self._memberships is None:
            return []
        return sorted(await self._memberships.of(dmp_uid))

    async def find(self, partner_id: str, partner_uid: str) -> Profile | None:
        """The profile a partner's ID is matched to, or None."""
        dmp_uid = await self._matches.dmp_uid_for(partner_id, partner_uid)
        return None if dmp_uid is None else await self.get(dmp_uid)


async def _no_traits() -> tuple[dict[str, AttributeValue], dict[str, tuple[float, ...]]]:
    return {}, {}
