"""Moving data between stores (``cookiematch store copy``) and counting it (``store stats``).

Neither needs key order: both read the source as it finds its keys (``in_order=False``), one
page at a time, whatever the size of the store (on Redis a key may then be read twice while
Redis resizes its table: copied again with the same value, or counted twice).
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cookiematch.storage.base import FieldEntry, Store, Write

Progress = Callable[[int], None]
"""Called with how many keys were just copied."""


@dataclass
class Copied:
    values: int = 0  # plain keys
    maps: int = 0  # field maps
    fields: int = 0


async def copy_store(
    src: Store, dst: Store, *, prefix: str = "", batch: int = 1000, progress: Progress | None = None
) -> Copied:
    """Copy live plain keys (with their remaining TTL) and field maps (per-field TTLs): the
    counts are of what was written (the module docstring)."""
    done = Copied()
    writes: list[Write] = []

    async def flush_writes() -> None:
        await dst.write_many(writes)
        done.values += len(writes)
        if progress:
            progress(len(writes))
        writes.clear()

    async for key, value, ttl in src.scan_ttl(prefix, batch=batch, in_order=False):
        if ttl is None or ttl > 0:
            writes.append(Write(key, value, ttl))
        if len(writes) >= batch:
            await flush_writes()
    await flush_writes()

    pending: list[tuple[str, dict[str, FieldEntry]]] = []

    async def flush_maps() -> None:
        await asyncio.gather(*(_copy_map(dst, key, fields) for key, fields in pending))
        done.maps += len(pending)
        done.fields += sum(len(fields) for _, fields in pending)
        if progress:
            progress(len(pending))
        pending.clear()

    async for item in src.scan_maps(prefix, batch=max(1, batch // 10), in_order=False):
        pending.append(item)
        if len(pending) >= batch // 10:
            await flush_maps()
    await flush_maps()
    return done


async def _copy_map(dst: Store, key: str, fields: Mapping[str, FieldEntry]) -> None:
    """One ``hset`` per distinct TTL (fields that expire together)."""
    by_ttl: dict[float | None, dict[str, bytes]] = defaultdict(dict)
    for name, (value, ttl) in fields.items():
        if ttl is None or ttl > 0:
            by_ttl[ttl][name] = value
    for ttl, mapping in by_ttl.items():
        await dst.hset(key, mapping, ttl=ttl)


@dataclass
class Stats:
    values: Counter[str] = field(default_factory=Counter)  # plain keys by prefix
    maps: Counter[str] = field(default_factory=Counter)  # field maps by prefix
    fields: Counter[str] = field(default_factory=Counter)  # their fields by prefix


def key_prefix(key: str, separator: str = ":") -> str:
    """``hm:{abc}:x`` → ``hm:``; a key without the separator is its own group ``(none)``."""
    head, sep, _ = key.partition(separator)
    return head + sep if sep else "(none)"


async def count_keys(store: Store, *, prefix: str = "") -> Stats:
    stats = Stats()
    async for page in store.scan_pages(prefix, in_order=False):
        for key, _ in page:
            stats.values[key_prefix(key)] += 1
    async for key, fields in store.scan_maps(prefix, in_order=False):
        stats.maps[key_prefix(key)] += 1
        stats.fields[key_prefix(key)] += len(fields)
    return stats
