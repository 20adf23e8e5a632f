"""Keys an earlier version of the DMP wrote that nothing reads any more, and their removal.

    dmps:{<segment>:<shard>}:m   field map  dmp uid -> joined at: the member index, 256 maps
                                            per segment, retired for the analytics engine's
                                            memberships (docs/dmp-data.md)

Left alone, those maps lapse ``membership_ttl_days`` after their last write; until then they
name browsers, erased ones too (the erasure no longer looks there). ``cookiematch dmp
migrate-to-engine`` deletes them (``drop_member_index``).
"""

from __future__ import annotations

from cookiematch.storage.base import Store

MEMBER_INDEX_PREFIX = "dmps:{"
MEMBER_INDEX_SUFFIX = "}:m"


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
