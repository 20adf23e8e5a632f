"""Change marks: which browsers an online write changed, so that the analytics engine reloads
only those (``dmp/analytics/refresh.py``) instead of scanning every profile.

Every online write of a profile (trait writes of the ingestion and of pending records applied
at sync, sync callbacks, impression pixels, consent marks, erasure) adds, in the same
``hset_many`` as the write itself, one field to a small map of the minute it happened in::

    dmpc:{<minute>:<shard>}:m   dmp uid -> written at (Unix seconds, ASCII)   TTL: MARK_TTL

``SHARDS`` maps per minute spread one minute's writes over a cluster. A reader asks for the
browsers changed in ``[start, end]``: it reads the maps of those minutes only, so its cost is
the number of changes, not of profiles. Marks outlive any reasonable gap between two reloads
(``MARK_TTL``); a reader that last looked longer ago than that reloads everything.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from cookiematch.dmp import keys
from cookiematch.storage.base import FieldWrite, Store

SHARDS = 16
MINUTE = 60.0
MARK_TTL = 2 * 86_400.0
"""How long a mark lives: a reader that last read longer ago than this (less a margin) has to
reload every profile."""
READ_KEYS = 512  # mark maps read at a time


def shard_of(dmp_uid: str) -> int:
    return zlib.crc32(dmp_uid.encode()) % SHARDS


def mark_writes(dmp_uids: Iterable[str], now: float) -> list[FieldWrite]:
    """The writes marking ``dmp_uids`` changed at ``now``: one per shard touched, to go in
    the same ``hset_many`` as the change itself."""
    minute = int(now // MINUTE)
    at = str(int(now)).encode()
    maps: dict[str, dict[str, bytes]] = {}
    for uid in dmp_uids:
        maps.setdefault(keys.change_mark_key(minute, shard_of(uid)), {})[uid] = at
    return [(key, fields, MARK_TTL) for key, fields in maps.items()]


async def changed_between(store: Store, start: float, end: float) -> set[str]:
    """The browsers marked in the minutes from ``start`` to ``end`` (both included)."""
    first, last = int(start // MINUTE), int(end // MINUTE)
    names = [
        keys.change_mark_key(minute, shard)
        for minute in range(first, last + 1)
        for shard in range(SHARDS)
    ]
    found: set[str] = set()
    for i in range(0, len(names), READ_KEYS):
        for fields in await store.hgetall_many(names[i : i + READ_KEYS]):
            found.update(fields)
    return found
