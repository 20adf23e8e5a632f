"""Keys an earlier version of the DMP wrote that nothing reads any more, and their removal.

    dmps:{<segment>:<shard>}:m   field map  dmp uid -> joined at: the member index, 256 maps
                                            per segment, retired for the analytics engine's
                                            memberships (docs/dmp-data.md)

Left alone, those maps lapse ``membership_ttl_days`` after their last write; until then they
name browsers: the access report lists the uid's entries and the erasure deletes them
(``dmp/subjects.py``, under ``engine = "off"`` too). ``cookiematch dmp migrate-to-engine``
deletes the maps (``drop_member_index``).
"""

from __future__ import annotations

from cookiematch.storage.base import Store

MEMBER_INDEX_PREFIX = "dmps:{"
MEMBER_INDEX_SUFFIX = "}:m"


def member_index_key(segment: str, shard: int) -> str:
    """A map of the retired member index: a segment's uids whose ``keys.shard_of`` is ``shard``."""
    return f"{MEMBER_INDEX_PREFIX}{segment}:{shard:03d}{MEMBER_INDEX_SUFFIX}"


async def drop_member_index(store: Store) -> int:
    """Delete every map of the retired member index; return how many there were. (The
    segments' sketches share the prefix: plain keys, kept.)"""
    found = [
        key
        async for key, _ in store.scan_maps(MEMBER_INDEX_PREFIX)
        if key.endswith(MEMBER_INDEX_SUFFIX)
    ]
    for key in found:
        await store.delete(key)
    return len(found)
