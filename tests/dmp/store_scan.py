"""Where an ID still appears in a DMP store: every key under every DMP prefix, plain values and
field maps, scanned whole (its name, its fields' names, its values); and which browsers' own
membership maps hold a segment."""

from __future__ import annotations

from collections.abc import Iterable

from cookiematch.dmp.segments.source import MEMBERSHIP_SUFFIX, split_profile_key
from cookiematch.storage import Store

DMP_PREFIXES = ("dmp:", "dmps:", "dmpx:", "{dmp")
"""Every key the DMP writes starts with one of these (``dmp/keys.py``)."""


async def mentions(store: Store, *ids: str) -> list[str]:
    """``key`` or ``key[field]`` of every live key, field or value that contains one of ``ids``."""
    needles = [i.encode() for i in ids]

    def found(*texts: bytes) -> bool:
        return any(n in text for n in needles for text in texts)

    hits: list[str] = []
    for prefix in DMP_PREFIXES:
        async for key, value, _ in store.scan_ttl(prefix):
            if found(key.encode(), value):
                hits.append(key)
        async for key, fields in store.scan_maps(prefix):
            for name, (raw, _) in fields.items():
                if found(key.encode(), name.encode(), raw):
                    hits.append(f"{key}[{name}]")
    return sorted(hits)


async def members_of(store: Store, segment: str) -> set[str]:
    """The browsers whose own membership map (``dmp:{uid}:s``) holds ``segment``: what
    ``/audiences`` and the profile look-up read, scanned whole."""
    found: set[str] = set()
    async for key, fields in store.scan_maps("dmp:{"):
        parts = split_profile_key(key)
        if parts is not None and parts[1] == MEMBERSHIP_SUFFIX and segment in fields:
            found.add(parts[0])
    return found


async def sizes_of(store: Store, segments: Iterable[str]) -> dict[str, int]:
    """``members_of`` counted, per segment."""
    return {segment: len(await members_of(store, segment)) for segment in segments}
