"""Plain keys of an earlier layout moved into field maps, once per store.

A small set of records read as a whole (a registry, per-process counters) kept one plain key
each under a prefix is read with a prefix scan, which on Redis walks the whole keyspace (SCAN
with MATCH looks at every key of the database, whatever the prefix). Kept as the fields of one
field map they are read in one call whatever else the store holds. ``move_into_maps`` moves
what an earlier version wrote:

    marker set? ── yes ──▶ done (one read)
        └─ no ──▶ each prefix's keys read (a scan, this once) ──▶ written as fields of its map
                  where the map has no such field yet (this version's writes win) ──▶ marker
                  set ──▶ the keys deleted

Running it twice at once moves the same values twice: harmless. A fleet is upgraded together:
a key an earlier version writes after the move is not read.
"""

from __future__ import annotations

from collections.abc import Sequence

from cookiematch.storage.base import Store

__all__ = ["move_into_maps"]

MARKER = b"1"


async def move_into_maps(store: Store, moves: Sequence[tuple[str, str]], marker: str) -> int:
    """For each ``(prefix, map_key)`` of ``moves``, the plain keys under ``prefix`` moved into
    the field map ``map_key`` (the field: the key without the prefix), unless ``marker`` says
    it was done; then ``marker`` set. The keys moved (0 once done)."""
    if await store.get(marker) is not None:
        return 0
    found = [{key[len(prefix) :]: value async for key, value in store.scan(prefix)}
             for prefix, _ in moves]  # fmt: skip
    held = await store.hgetall_many([map_key for _, map_key in moves])
    for (_, map_key), legacy, present in zip(moves, found, held, strict=True):
        missing = {field: value for field, value in legacy.items() if field not in present}
        if missing:
            await store.hset(map_key, missing)
    await store.set(marker, MARKER)
    for (prefix, _), legacy in zip(moves, found, strict=True):
        for field in legacy:
            await store.delete(prefix + field)
    return sum(len(legacy) for legacy in found)
