"""A browser's DMP profile as one read model: partner IDs, events, in-band data."""

from __future__ import annotations

import asyncio

import msgspec

from cookiematch.dmp.events import EventLog
from cookiematch.dmp.inband import InbandData
from cookiematch.dmp.matches import MatchTable


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

    @property
    def empty(self) -> bool:
        return not (self.partners or self.events or self.inband)


class Profiles:
    """Assembles profiles from the match table, the event log and the in-band data."""

    def __init__(self, matches: MatchTable, events: EventLog, inband: InbandData) -> None:
        self._matches = matches
        self._events = events
        self._inband = inband

    async def get(self, dmp_uid: str) -> Profile:
        matches, tallies, inband = await asyncio.gather(
            self._matches.partners(dmp_uid),
            self._events.tallies(dmp_uid),
            self._inband.get(dmp_uid),
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
        )

    async def find(self, partner_id: str, partner_uid: str) -> Profile | None:
        """The profile a partner's ID is matched to, or None."""
        dmp_uid = await self._matches.dmp_uid_for(partner_id, partner_uid)
        return None if dmp_uid is None else await self.get(dmp_uid)
