"""Everything a segment rule can look at for one browser, read once from the store.

Built by the profile reader (``dmp/traits/reader.py``) from the DMP's field maps; consumed by
the pure segment rules (``dmp/segments/``). Timestamps are Unix seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

from cookiematch.dmp.events import ImpressionEvent, decode_tally
from cookiematch.dmp.matches import PartnerMatch

AttributeValue = str | int | float | bool | list[str]


@dataclass(frozen=True, slots=True)
class ProfileSnapshot:
    """One browser's profile at a moment.

    - ``attributes``: current (unexpired) attributes from every ingested partner, by name.
    - ``events``: ingested events by name, the most recent timestamps (newest first, bounded).
    - ``exposures``: from the impression pixels: ``"imp"|"click"|"conv"`` ->
      ``{campaign: count}``.
    - ``partners``: partner id -> partner uid (the syncs).
    """

    dmp_uid: str
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    events: dict[str, tuple[float, ...]] = field(default_factory=dict)
    exposures: dict[str, dict[str, int]] = field(default_factory=dict)
    partners: dict[str, str] = field(default_factory=dict)


RawProfile = Mapping[str, Mapping[str, bytes]]
"""A browser's field maps by key suffix (``p``, ``e``, ``kv``, ``s``, ...): field -> value."""

_match = msgspec.json.Decoder(PartnerMatch)


def basic_snapshot(dmp_uid: str, raw: RawProfile, now: float) -> ProfileSnapshot:
    """Partners (``:p``) and impression-pixel exposures (``:e``)."""
    partners: dict[str, str] = {}
    for partner, value in raw.get("p", {}).items():
        try:
            partners[partner] = _match.decode(value).uid
        except msgspec.DecodeError:
            continue
    exposures: dict[str, dict[str, int]] = {}
    for name, value in raw.get("e", {}).items():
        event, tally = ImpressionEvent.from_field(name), decode_tally(value)
        if event is None or tally is None:
            continue
        by_campaign = exposures.setdefault(event.event.value, {})
        by_campaign[event.campaign] = by_campaign.get(event.campaign, 0) + tally.count
    return ProfileSnapshot(dmp_uid, partners=partners, exposures=exposures)
