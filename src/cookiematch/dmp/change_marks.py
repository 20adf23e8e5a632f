"""Change marks: which browsers an online write changed, so that the analytics engine reloads
only those (``dmp/analytics/refresh.py``) instead of scanning every profile.

Every online write of a profile's maps in the key-value store (sync callbacks, impression
pixels, consent marks, erasure; trait writes are staged for the engine instead and mark
nothing, ``traits/writes.py``) adds, in the same store call as the write itself
(``hset_many``, or ``swap_together``'s ``also`` for a sync callback), one field to a small map
of the minute it happened in::

    dmpc:{<minute>:<shard>}:m   dmp uid -> written at (Unix seconds, ASCII)   TTL: MARK_TTL

``SHARDS`` maps per minute, chosen by time: a mark goes to the map of the slice of the minute
it was written in (``SHARDS`` slices of 3.7 ms), a write of many browsers to that map and the
next ones, ``PER_MAP`` browsers a map. So the marks of the writes one group commit carries
land in one or two maps, next to each other in the store's key order, instead of one random
map each: on SQLite a DMP callback's mark costs a share of one page rewritten per commit
rather than a page of its own (the SQLite backend rewrites a map's whole row on each write,
``storage/packed.py``; a map holds about ``writes per second / 273`` fields). The maps of a
minute are spread over a cluster's nodes slice by slice. Earlier versions chose the map by a
CRC-32 of the uid (first 1,024, then 16,384 maps a minute); a reader reads every map of a
minute whatever wrote it, so marks of either layout are read alike.

A reader asks for the browsers changed in ``[start, end]``: it reads the maps of those minutes
only, so its cost is the number of changes and minutes, not of profiles; once it has read them
for good it deletes them (``forget_minutes``), so the marks held are those of the minutes since
the last read. Marks outlive any reasonable gap between two reads (``MARK_TTL``); a reader that
last looked longer ago than that, or whose gap holds more than ``MAX_READ_NAMES`` maps
(``SHARDS`` a minute), reloads everything instead and leaves the gap's marks to lapse.

Nothing reads marks when no analytics engine is configured: the roles then pass
``NOT_MARKING`` and online writes carry no marks (``ChangeMarks``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cookiematch.dmp import keys
from cookiematch.storage.base import FieldWrite, Store, Write

SHARDS = 16384
MINUTE = 60.0
PER_MAP = 64
"""The most browsers one write of many puts in one mark map (the rest go to the next maps)."""
MARK_TTL = 2 * 86_400.0
"""How long a mark lives: a reader that last read longer ago than this (less a margin) has to
reload every profile."""
READ_KEYS = 512  # mark maps read (or deleted) at a time
MAX_READ_NAMES = 120 * SHARDS
"""The most mark maps a reader reads (and then deletes) in one go: two hours of minutes,
about 2M names, most of them absent. A scheduled reader looks every few minutes (the
recompute's default interval is 5), so only a reader stopped for longer goes past it; it
reloads every profile instead (``mark_names`` tells), whose cost is the store's profiles,
not the gap's length (two days of marks would be ~47M reads and deletes)."""


def _slice(now: float) -> tuple[int, int]:
    """``now``'s minute (Unix minutes) and the slice of it ``now`` is in."""
    minute = int(now // MINUTE)
    return minute, int((now - minute * MINUTE) * (SHARDS / MINUTE))


def mark_writes(dmp_uids: Iterable[str], now: float) -> list[FieldWrite]:
    """The writes marking ``dmp_uids`` changed at ``now``: the map of ``now``'s slice of its
    minute, then the next ones, ``PER_MAP`` browsers a map, to go in the same ``hset_many`` as
    the change itself."""
    minute, first = _slice(now)
    at = str(int(now)).encode()
    maps: dict[str, dict[str, bytes]] = {}
    for i, uid in enumerate(dmp_uids):
        key = keys.change_mark_key(minute, (first + i // PER_MAP) % SHARDS)
        maps.setdefault(key, {})[uid] = at
    return [(key, fields, MARK_TTL) for key, fields in maps.items()]


class _Moment:
    """The mark map's key and the written-at value of the latest write, reused by the next
    writes of the same slice and second (each held as one tuple: a read never sees half of
    an update)."""

    __slots__ = ("key", "value")

    def __init__(self) -> None:
        self.key: tuple[int, int, str] = (-1, -1, "")
        self.value: tuple[int, bytes] = (-1, b"")

    def mark(self, dmp_uid: str, now: float) -> FieldWrite:
        """``mark_writes([dmp_uid], now)``'s one write: what the online write of one browser
        (a sync callback, a pixel) carries."""
        minute, first = _slice(now)
        held = self.key
        if held[0] != minute or held[1] != first:
            held = self.key = (minute, first, keys.change_mark_key(minute, first))
        second = int(now)
        value = self.value
        if value[0] != second:
            value = self.value = (second, str(second).encode())
        return held[2], {dmp_uid: value[1]}, MARK_TTL


@dataclass(frozen=True, slots=True)
class ChangeMarks:
    """Whether online writes mark the browsers they change: only an analytics engine reads
    the marks (``[dmp.analytics] engine``; ``roots/dmp.py`` decides, once)."""

    on: bool = True
    _moment: _Moment = field(default_factory=_Moment, compare=False, repr=False)

    def writes(self, dmp_uids: Iterable[str], now: float) -> list[FieldWrite]:
        """:func:`mark_writes`, or none when marks are off."""
        return mark_writes(dmp_uids, now) if self.on else []

    def write(self, dmp_uid: str, now: float) -> tuple[FieldWrite, ...]:
        """``writes([dmp_uid], now)``, made directly (the key computed once a slice)."""
        return (self._moment.mark(dmp_uid, now),) if self.on else ()


MARKING = ChangeMarks(on=True)
NOT_MARKING = ChangeMarks(on=False)


def _map_names(first_minute: int, last_minute: int) -> list[str]:
    return [
        keys.change_mark_key(minute, shard)
        for minute in range(first_minute, last_minute + 1)
        for shard in range(SHARDS)
    ]


def mark_names(start: float, end: float) -> int:
    """How many mark maps the minutes from ``start`` to ``end`` (both included) hold."""
    return max(0, int(end // MINUTE) - int(start // MINUTE) + 1) * SHARDS


async def changed_between(store: Store, start: float, end: float) -> set[str]:
    """The browsers marked in the minutes from ``start`` to ``end`` (both included)."""
    names = _map_names(int(start // MINUTE), int(end // MINUTE))
    found: set[str] = set()
    for i in range(0, len(names), READ_KEYS):
        for fields in await store.hgetall_many(names[i : i + READ_KEYS]):
            found.update(fields)
    return found


async def forget_minutes(
    store: Store, start: float, before: float, *, most: int = MAX_READ_NAMES
) -> int:
    """Delete the marks of the minutes from ``start``'s to the last one wholly before
    ``before`` (a reader's next read starts at ``before``); the number of minutes. At most
    ``most`` maps are deleted, those of the latest minutes: older marks lapse (``MARK_TTL``)."""
    last = int(before // MINUTE) - 1
    first = max(int(start // MINUTE), last + 1 - most // SHARDS)
    if last < first:
        return 0
    names = _map_names(first, last)
    for i in range(0, len(names), READ_KEYS):
        await store.write_many([Write(name, None) for name in names[i : i + READ_KEYS]])
    return last - first + 1
