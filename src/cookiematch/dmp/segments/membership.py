"""Segment memberships in the store: one map per browser, ``dmp:{uid}:s`` (segment -> joined
at), which the profile look-up and ``/audiences`` read per request.

Enumerating a segment (sizes, overlap, exports) is the analytics engine's work: it holds the
memberships it computed and writes only their diff here. Each entry lives ``ttl_seconds``
(``[dmp] membership_ttl_days``) from its last write; a recompute rewrites a membership still
held once it is due (``dmp/lifetimes.py``; ``Change.refreshed``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cookiematch.dmp import keys, lifetimes
from cookiematch.storage.base import FieldEntry, FieldWrite, Store


@dataclass(frozen=True, slots=True)
class Change:
    """What changed for one browser: segments joined (with the time) and left, and those it
    is still in whose entries are rewritten with a fresh lifetime (with their joining time)."""

    dmp_uid: str
    joined: dict[str, float] = field(default_factory=dict)
    left: tuple[str, ...] = ()
    refreshed: dict[str, float] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.joined or self.left or self.refreshed)

    @property
    def written(self) -> dict[str, float]:
        """Segment -> joining time of every entry this change writes."""
        return {**self.refreshed, **self.joined}


def diff(
    dmp_uid: str,
    stored: Iterable[str],
    now_in: set[str],
    now: float,
    due: Mapping[str, float] | None = None,
) -> Change:
    """The change that takes a browser from its ``stored`` segments to ``now_in``; of the
    stored entries ``due`` for a refresh (segment -> joining time), those still held are
    refreshed."""
    before = set(stored)
    return Change(
        dmp_uid,
        {s: now for s in sorted(now_in - before)},
        tuple(sorted(before - now_in)),
        {s: at for s, at in sorted((due or {}).items()) if s in now_in and s in before},
    )


def decode_time(raw: bytes) -> float:
    """A stored joining time (Unix seconds, ASCII); 0 when it does not read."""
    try:
        return float(raw)
    except ValueError:
        return 0.0


class Memberships:
    """Reads and writes memberships; every call touches one key per store operation."""

    def __init__(self, store: Store, ttl_seconds: float = lifetimes.MEMBERSHIP_TTL) -> None:
        self._store = store
        self.ttl = ttl_seconds

    def due(self, entries: Mapping[str, FieldEntry]) -> dict[str, float]:
        """Of a browser's stored entries (segment -> (joining time, remaining lifetime)), those
        due for a refresh, with their joining time."""
        return {
            segment: decode_time(raw)
            for segment, (raw, remaining) in entries.items()
            if lifetimes.due(remaining, self.ttl)
        }

    async def of(self, dmp_uid: str) -> dict[str, float]:
        """Segment id -> time the browser joined it."""
        raw = await self._store.hgetall(keys.membership_key(dmp_uid))
        return {s: decode_time(v) for s, v in raw.items()}

    async def of_many(self, dmp_uids: Sequence[str]) -> list[dict[str, float]]:
        maps = await self._store.hgetall_many([keys.membership_key(uid) for uid in dmp_uids])
        return [{s: decode_time(v) for s, v in raw.items()} for raw in maps]

    async def apply(self, changes: Sequence[Change]) -> None:
        """Write changes to the browsers' maps: joins and refreshes in one ``hset_many``,
        leaves beside it; every entry written lives ``ttl`` from now."""
        joins: list[FieldWrite] = []
        leaves: list[Coroutine[Any, Any, object]] = []
        for change in changes:
            key = keys.membership_key(change.dmp_uid)
            written = change.written
            if written:
                joins.append((key, {s: _encode_time(t) for s, t in written.items()}, self.ttl))
            if change.left:
                leaves.append(self._store.hdel(key, list(change.left)))
        await asyncio.gather(self._store.hset_many(joins), *leaves)


def _encode_time(at: float) -> bytes:
    return str(int(at)).encode()
