"""The storage interface every backend implements (``storage.registry`` opens one by URL).

Keys are ``str`` (keys that must live on one cluster node share a ``{hash tag}``); values are
``bytes``. TTLs are seconds (positive); expiry is computed with the store's injected ``clock``
(wall-clock seconds by default, since expiry times are persisted). A key holds a plain value or
a field map (use distinct keys for the two); ``delete`` removes whatever the key holds.
Backends raise only StorageError (their own errors wrapped, the original as ``__cause__``);
StoreUnavailable when the backend cannot be reached or the store is closed.

Durability: with ``Durability.ACK`` a write coroutine returns only once the write is durable
(group commit: concurrent writes share one commit/fsync); with ``Durability.ASYNC`` ``set``,
``hset``, ``hset_many``, ``write_many`` and ``write_together`` return once queued (a crash may
lose them), while ``delete``, ``hdel`` and ``set_if_absent`` still wait for their result.
Either way a read sees every write made through the same store object before it.

``hset_many`` and ``hgetall_many`` are the bulk forms of ``hset`` and ``hgetall`` (one queued op,
one transaction or pipeline); ``hswap_many`` is ``hset_many`` answering the values the written
fields held before, ``swap_many`` is ``write_many`` answering the values the written keys
held before, and ``swap_together`` is ``write_together`` answering what the written fields held
before (a read folded into the write: one store call); the base class gives a slow default
for a backend without them.
``write_together`` is ``write_many`` and ``hset_many`` as one call (one queued op): a request
that writes a plain key and a field map pays for one store call, not two.
``scan_pages`` is ``scan`` a page at a time, for a reader that hands the rows on in bulk.
``scan_ttl`` and ``scan_maps`` enumerate a store with expiries (``cookiematch store copy``);
scans are in key order, each key once: a Redis backend holds every matching key name to give
that order. ``in_order=False`` (``scan_pages``, ``scan_ttl``, ``scan_maps``) is for a reader
that needs neither, a count or a copy of a whole table: the backend hands its keys on as it
finds them, in memory that does not grow with the scan (on Redis a key may then come twice,
when Redis resizes its table during the scan: SCAN's own guarantee).
``get_entry`` and ``hgetall_entries`` read one key with them (what a subject access shows).
"""

from __future__ import annotations

import asyncio
import enum
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import NamedTuple

FieldEntry = tuple[bytes, float | None]
"""A field's value and its remaining lifetime in seconds (None: no expiry)."""

Page = Sequence[tuple[str, bytes]]
"""A page of ``Store.scan_pages``: live plain keys and their values, in key order."""

FieldWrite = tuple[str, Mapping[str, bytes], float | None]
"""One ``hset`` of a bulk write: ``(key, fields, ttl)``, the same rules as ``hset``."""


class Durability(enum.Enum):
    ACK = "ack"
    ASYNC = "async"


class Write(NamedTuple):
    """One write of a batch: ``value is None`` deletes the key. A named tuple: made on
    request paths (the buyer's ``/match`` makes two), at half a frozen dataclass's cost."""

    key: str
    value: bytes | None
    ttl: float | None = None


class Store(ABC):
    """Async key-value and field-map store."""

    durability: Durability

    @property
    def lost(self) -> int:
        """Writes queued without waiting (``Durability.ASYNC``) that the backend did not store
        (each is logged); whoever queues such writes checks this after ``close()``."""
        return 0

    @property
    def backlog(self) -> int:
        """Writes queued that nobody waits for (``Durability.ASYNC``), not yet stored:
        ``storage.guard`` refuses more once this reaches its bound."""
        return 0

    @property
    def batches(self) -> tuple[int, int]:
        """Statistics of group commit since the store opened: the batches sent to the backend
        (Redis pipelines, SQLite transactions) and the operations they carried; ``(0, 0)``
        for a backend that does not batch."""
        return 0, 0

    batched_reads: bool = False
    """Whether :meth:`get_batched` answers: a backend whose point reads cost less read on the
    event loop, those of a turn of the loop together, than each handed to another thread and
    back (SQLite under ``Durability.ACK``)."""

    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    def get_batched(self, key: str) -> Awaitable[bytes | None]:
        """``get``, read on the event loop's thread with the other such reads of this turn of
        the loop once its callbacks ran (no deadline: nothing waits), where
        ``batched_reads``."""
        raise NotImplementedError(f"{type(self).__name__} has no batched reads")

    @abstractmethod
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None: ...

    @abstractmethod
    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        """``set`` only if the key holds no live plain value, atomically across every store
        object and process on the backend; True if this call wrote it. Always awaits the
        result, whatever the durability (``storage.lease`` claims with it)."""

    @abstractmethod
    async def write_many(self, writes: Sequence[Write]) -> None:
        """Apply several writes; atomically where the backend can (one transaction)."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove the key (plain value or field map); True if it held something live."""

    @abstractmethod
    async def hget(self, key: str, field: str) -> bytes | None: ...

    async def hget_many(self, pairs: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """``hget`` of each ``(key, field)``, in order.

        Backends with a bulk read override this default, which makes the reads concurrently
        (SQLite's reader threads then take them in one batch, one query a table)."""
        return list(await asyncio.gather(*(self.hget(key, field) for key, field in pairs)))

    def hget_batched(self, key: str, field: str) -> Awaitable[bytes | None]:
        """``hget``, read with the other such reads of this turn of the event loop in one
        ``hget_many`` where a layer gathers them (``storage.guard``); else at once."""
        return self.hget(key, field)

    @abstractmethod
    async def hgetall(self, key: str) -> dict[str, bytes]: ...

    @abstractmethod
    async def hset(
        self, key: str, mapping: Mapping[str, bytes], *, ttl: float | None = None
    ) -> None:
        """Set fields; ``ttl`` applies to these fields (per-field expiry)."""

    async def hset_many(self, items: Sequence[FieldWrite]) -> None:
        """``hset(key, fields, ttl=ttl)`` for each item, in order (a key may appear again).

        The same rules as ``hset`` (per-field TTL, values are bytes, a bad TTL raises
        ValueError before anything is written) and the same durability: with
        ``Durability.ASYNC`` it returns once queued. Atomic where the backend can be (one
        transaction); not on Redis (one pipeline). Backends with a bulk path override this
        default, which awaits ``hset`` item by item.
        """
        for _, _, ttl in items:
            check_ttl(ttl)
        for key, mapping, ttl in items:
            await self.hset(key, mapping, ttl=ttl)

    async def hswap_many(self, items: Sequence[FieldWrite]) -> list[dict[str, bytes]]:
        """``hset_many(items)``, answering for each item the live values its fields held
        just before this call (``{}`` where none had one): a read and a write in one store
        call. Waits for the write whatever the durability. Give each key once per call (a
        key given twice: whether its second answer sees the first write is the backend's).
        The fields of one key are read and written in one step where the backend can
        (SQLite's writer, a Redis script); this default, for a backend without one, reads
        them all, then writes.
        """
        for _, _, ttl in items:
            check_ttl(ttl)
        stored = await self.hgetall_many([key for key, _, _ in items])
        await self.hset_many(items)
        return [
            {name: held[name] for name in mapping if name in held}
            for (_, mapping, _), held in zip(items, stored, strict=True)
        ]

    async def swap_many(self, writes: Sequence[Write]) -> list[bytes | None]:
        """``write_many(writes)``, answering for each write the live value its key held just
        before this call (None where none): a read and a write in one store call. Waits for
        the write whatever the durability. Give each key once per call. SQLite reads and
        writes in one transaction of its writer; this default, for a backend without that,
        reads them all, then writes.
        """
        for write in writes:
            check_ttl(write.ttl)
        held = await self.get_many([write.key for write in writes])
        await self.write_many(writes)
        return held

    async def write_together(
        self, writes: Sequence[Write], field_writes: Sequence[FieldWrite]
    ) -> None:
        """``write_many(writes)`` and ``hset_many(field_writes)`` as one call, with their
        rules and durability: one queued op, so one transaction (SQLite) or one pipeline
        (Redis) carries both. Plain keys and field maps are distinct keys, so the order
        between the two lists does not matter. Backends with a single-op path override this
        default, which awaits one then the other."""
        for _, _, ttl in field_writes:
            check_ttl(ttl)
        if writes:
            await self.write_many(writes)
        if field_writes:
            await self.hset_many(field_writes)

    async def swap_together(
        self,
        writes: Sequence[Write],
        field_writes: Sequence[FieldWrite],
        read_after: Sequence[str] = (),
        also: Sequence[FieldWrite] = (),
    ) -> list[dict[str, bytes]]:
        """``write_together(writes, [*field_writes, *also])``, answering for each of
        ``field_writes`` the live values its fields held just before this call (as
        ``hswap_many``), then for each key of ``read_after`` its live map once these writes
        are stored (a map another writer stored before them is seen; one stored after them can
        see these writes: a read-after-write check in the same call). ``also``: field writes
        of the same call whose earlier values nobody wants (written as ``hset_many`` writes
        them, nothing read for them). Waits for the writes whatever the durability. Give each
        map key once per call. SQLite reads and writes in one transaction of its writer, Redis
        in one pipeline; this default reads the maps, writes, then reads ``read_after``.
        """
        for _, _, ttl in field_writes:
            check_ttl(ttl)
        stored = await self.hgetall_many([key for key, _, _ in field_writes])
        await self.write_together(writes, [*field_writes, *also])
        after = await self.hgetall_many(read_after) if read_after else []
        return [
            {name: held[name] for name in mapping if name in held}
            for (_, mapping, _), held in zip(field_writes, stored, strict=True)
        ] + after

    async def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, bytes]]:
        """``hgetall`` of each key, in the order of ``keys`` (``{}`` for a missing map).

        Backends with a bulk read override this default, which reads the keys one by one.
        """
        return [await self.hgetall(key) for key in keys]

    @abstractmethod
    async def get_entry(self, key: str) -> FieldEntry | None:
        """A live plain value and its remaining lifetime, or None."""

    @abstractmethod
    async def hgetall_entries(self, key: str) -> dict[str, FieldEntry]:
        """A field map's live fields, each with its remaining lifetime."""

    @abstractmethod
    async def hdel(self, key: str, fields: Sequence[str]) -> int:
        """Remove fields; return how many live fields were removed."""

    @abstractmethod
    def scan(self, prefix: str, *, batch: int = 1000) -> AsyncIterator[tuple[str, bytes]]:
        """Iterate plain keys starting with ``prefix`` and their values (not field maps)."""

    async def scan_pages(
        self, prefix: str, *, batch: int = 1000, in_order: bool = True
    ) -> AsyncIterator[Page]:
        """``scan`` a page at a time: at most ``batch`` rows per page, none empty. The rows
        are the backend's own where it reads a page in one query (SQLite: the query's rows,
        no object made per entry here), so a bulk reader (the analytics engine) hands them
        on without a step of Python per entry. ``in_order=False``: in no particular order,
        in constant memory (the module docstring). This default, for a backend without such
        a query, pages ``scan``."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        page: list[tuple[str, bytes]] = []
        async for row in self.scan(prefix, batch=batch):
            page.append(row)
            if len(page) >= batch:
                yield page
                page = []
        if page:
            yield page

    @abstractmethod
    def scan_ttl(
        self, prefix: str, *, batch: int = 1000, in_order: bool = True
    ) -> AsyncIterator[tuple[str, bytes, float | None]]:
        """Like ``scan``, with each value's remaining lifetime in seconds (None: no expiry);
        ``in_order=False``: as ``scan_pages``'s."""

    @abstractmethod
    def scan_maps(
        self, prefix: str, *, batch: int = 100, in_order: bool = True
    ) -> AsyncIterator[tuple[str, dict[str, FieldEntry]]]:
        """Iterate field maps starting with ``prefix`` in key order, with their live fields;
        ``in_order=False``: as ``scan_pages``'s."""

    async def start(self) -> None:
        """Check once, after opening, that the backend can be reached (else StoreUnavailable).

        ``open_store`` cannot await: a backend that connects lazily (Redis) checks here.
        """
        return None  # optional hook: a backend that opens eagerly has nothing to check

    async def info(self) -> dict[str, str]:
        """A few facts about the backend for operators (name, address, version, sizes)."""
        return {"backend": type(self).__name__}

    @abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable if the backend cannot be reached."""

    @abstractmethod
    async def close(self) -> None:
        """Flush pending writes and release resources; later calls raise StoreUnavailable."""


def check_ttl(ttl: float | None) -> None:
    """ValueError unless ``ttl`` is None or a positive, finite number of seconds."""
    if ttl is not None and not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")


def as_bytes(value: object) -> bytes:
    """A value to store: ``bytes`` as is, a bytearray or memoryview copied; TypeError else."""
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"store values are bytes, not {type(value).__name__}")
