"""Everything a segment rule can look at for one browser, read once from the store.

Built by the profile reader (``dmp/traits.py``) from the DMP's field maps; consumed by the pure
segment rules (``dmp/segments/``). Timestamps are Unix seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
