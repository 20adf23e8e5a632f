"""Embedded backend: SQLite in WAL mode, one writer thread with group commit, reader threads.

``SQLiteStore`` checks each call's arguments on the event loop (values are bytes, TTLs become
expiries on the store's clock) and hands it to its engine as an op; no SQLite call runs on the
event loop but ``get_batched``'s point reads, those of a turn of the loop in one statement,
which a caller asks for where a hand-over costs more than the read (the bidder's look-up).
Under ``Durability.ACK`` a write returns once its transaction is committed and its WAL fsynced
(group commit: concurrent writes share one commit, one fsync one commit or more); under
``Durability.ASYNC`` once queued. The parts:

    sqlite_engine   the writer thread (group commit) and the reader threads, fed by queues
    sqlite_sync     the thread that fsyncs the WAL after the writer's commits (ACK)
    sqlite_batch    how a thread runs a batch: one transaction, consecutive writes merged
    sqlite_ops      the operations, run on a thread's connection
    sqlite_schema   the file's schema, its migration from version 1, and the SQL text

A field map is one row (``fm``: the fields packed with their values and expiries, see
``storage.packed``); writes to it are read-modify-write in the writer thread, which makes them
atomic. Expired values and fields are invisible to reads (against the injected clock) and
purged by the writer every ``purge_interval`` seconds, a bounded chunk at a time.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from urllib.parse import unquote

from cookiematch.clock import Clock
from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.storage import sqlite_ops as ops
from cookiematch.storage import sqlite_schema as schema
from cookiematch.storage.base import (
    Durability,
    FieldEntry,
    FieldWrite,
    Page,
    Store,
    Write,
    as_bytes,
    check_ttl,
)
from cookiematch.storage.sqlite_batch import wrap
from cookiematch.storage.sqlite_engine import Engine
from cookiematch.storage.sqlite_turn import TurnReads

CACHE_MIB = 64
"""A bulk (``Durability.ASYNC``) writer's page cache (SQLite's default is 2 MiB): the random
inserts of its transactions of thousands of writes stay in RAM, not spilled into the WAL."""
GROUP_COMMIT_CACHE_MIB = 8
"""The page cache of a writer of group commits (``Durability.ACK``). At the commit of a
transaction in which a B-tree balance renumbered pages, which random inserts make it do every
few commits, SQLite walks its page cache's whole hash table (the renumbering goes through the
lock-byte page's number, past the file's end, and the commit then drops what lies beyond), so
a bigger cache costs every commit: 64 MiB cost a quarter more CPU a group commit than 8 MiB
once the file outgrew the cache, and no size from 2 to 16 MiB did better than another
(``bench/writer_cache_bench.py``; docs/performance.md, "The writer's page cache"). The file's
pages come through the mmap and the OS cache."""
BUSY_TIMEOUT = 10.0  # seconds a connection waits for another process's write lock
BULK_BUSY_TIMEOUT = 600.0
"""The wait of an ASYNC (bulk) store: the server's workers or another command share the file,
and a batch's transaction holds the write lock for seconds; giving up would lose the queued
writes."""
WAL_SUFFIX = "-wal"  # SQLite's name for the file's write-ahead log
WRITER_LOCK_SUFFIX = "-writer.lock"
"""The file beside the database whose ``flock`` the writer threads of every process take in
turn, each waiting at most its store's busy timeout (``sqlite_engine.Engine``)."""
WRITER_TURN_SUFFIX = "-writer.turn"
"""The file beside it whose ``flock`` a writer holds while it waits for the writer lock, so
that a writer that has just committed queues behind it (``Engine._lock_writer``)."""
MMAP_MIB = 256  # reads through mmap (every connection): no copy into each reader's cache
STATEMENT_CACHE = 256
"""Prepared statements each connection keeps (Python's default is 128). A group commit's
multi-row statements have one shape per row count (``sqlite_ops.ROWS_PER_STATEMENT``) and its
reads one per ``IN`` bucket (``sqlite_ops.IN_STEP``); under a DMP callback load the writer used
about 256 shapes, so the default cache prepared most of them again at each use (the writer's
CPU per callback: 57.5-66.1 µs, 49.7-51.1 with every shape kept). A statement of 30 rows
holds about 13 KiB, one of 300 about 65 KiB."""


class SQLiteStore(Store):
    """The embedded store. Open it with ``open_store("sqlite:///path")``; ``close()`` it."""

    def __init__(
        self,
        path: str,
        *,
        durability: Durability = Durability.ACK,
        clock: Clock = time.time,
        readers: int = 2,
        max_pending: int = 10_000,
        purge_interval: float | None = 60.0,
        busy_timeout: float | None = None,
        cache_mib: int | None = None,
        mmap_mib: int | None = None,
    ) -> None:
        self.path = path
        self.durability = durability
        self._clock = clock
        self._async = durability is Durability.ASYNC
        if cache_mib is None:
            cache_mib = CACHE_MIB if self._async else GROUP_COMMIT_CACHE_MIB
        self._cache_mib = cache_mib
        self._mmap_mib = MMAP_MIB if mmap_mib is None else mmap_mib
        if busy_timeout is None:
            busy_timeout = BULK_BUSY_TIMEOUT if self._async else BUSY_TIMEOUT
        self._busy_timeout = busy_timeout
        self.batched_reads = not self._async  # ASYNC: a read waits for the queued writes
        self._turn: TurnReads | None = None  # get_batched's, opened on first use
        conns: list[sqlite3.Connection] = []
        self._writer_lock: int | None = None
        self._writer_turn: int | None = None
        try:
            conns.append(self._open_writer_waiting(busy_timeout))
            conns += [self._connect(query_only=True) for _ in range(readers)]
            self._writer_lock = os.open(path + WRITER_LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
            self._writer_turn = os.open(path + WRITER_TURN_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
        except (sqlite3.Error, OSError, ValueError) as exc:
            for conn in conns:
                conn.close()
            self._close_lock_files()
            raise StoreUnavailable(f"cannot open sqlite store {path!r}: {exc}") from exc
        self._engine = Engine(
            conns[0],
            conns[1:],
            asynchronous=self._async,
            clock=clock,
            max_pending=max_pending,
            purge_interval=purge_interval,
            writer_lock=self._writer_lock,
            writer_turn=self._writer_turn,
            busy_timeout=busy_timeout,
            wal_path=None if self._async else path + WAL_SUFFIX,
        )

    @classmethod
    def from_url(
        cls, url: str, *, durability: Durability = Durability.ACK, clock: Clock = time.time
    ) -> SQLiteStore:
        return cls(path_from_url(url), durability=durability, clock=clock)

    # --- statistics ------------------------------------------------------------------------

    @property
    def lost(self) -> int:
        """Queued writes nobody waited for (``Durability.ASYNC``) that failed (each logged)."""
        return self._engine.lost

    @property
    def backlog(self) -> int:
        return self._engine.backlog

    @property
    def batches(self) -> tuple[int, int]:
        return self._engine.commits, self._engine.writes

    @property
    def commits(self) -> int:
        """Transactions committed by the writer."""
        return self._engine.commits

    @property
    def writes(self) -> int:
        """Write ops those transactions carried."""
        return self._engine.writes

    # --- opening the file ------------------------------------------------------------------

    def _connect(
        self, *, query_only: bool = False, busy_timeout: float | None = None
    ) -> sqlite3.Connection:
        timeout = self._busy_timeout if busy_timeout is None else busy_timeout
        conn = sqlite3.connect(
            self.path,
            timeout=timeout,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=STATEMENT_CACHE,
        )
        if query_only:
            conn.execute("PRAGMA query_only = ON")
        conn.execute(f"PRAGMA mmap_size = {self._mmap_mib * 2**20}")
        conn.execute("PRAGMA temp_store = MEMORY")
        return conn

    def _open_writer_waiting(self, timeout: float) -> sqlite3.Connection:
        """``_open_writer``, tried again for up to ``timeout`` seconds while the file is locked:
        workers starting together on a new file switch it to WAL at once, and SQLite answers
        the second switch "database is locked" without waiting."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._open_writer()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.01)

    def _open_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL journal mode (got {mode!r})")
            # ACK too: its commits are fsynced by the engine's syncer, not inside COMMIT
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA journal_size_limit = 67108864")  # trim the WAL after checkpoints
            conn.execute(f"PRAGMA cache_size = {-self._cache_mib * 1024}")  # negative: KiB
            if conn.execute("PRAGMA user_version").fetchone()[0] != schema.SCHEMA_VERSION:
                schema.upgrade(conn, self._clock)
        except BaseException:
            conn.close()
            raise
        return conn

    def _expiry(self, ttl: float | None) -> float | None:
        check_ttl(ttl)
        return None if ttl is None else self._clock() + ttl

    def _rows(self, writes: Sequence[Write]) -> list[tuple[str, bytes | None, float | None]]:
        """The writes as rows of key, value (None: delete) and expiry time: the clock read
        once a call, each lifetime checked where it changes (a group of calls repeats one)."""
        rows: list[tuple[str, bytes | None, float | None]] = []
        ttl_of: float | None = None
        expires_at: float | None = None
        now: float | None = None
        for key, value, ttl in writes:
            if ttl != ttl_of or now is None:
                check_ttl(ttl)
                if now is None:
                    now = self._clock()
                ttl_of, expires_at = ttl, None if ttl is None else now + ttl
            if value is not None and type(value) is not bytes:
                value = as_bytes(value)
            rows.append((key, value, expires_at))
        return rows

    # --- Store -----------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return await self._engine.read(ops.get, key, self._clock())

    def get_batched(self, key: str) -> Awaitable[bytes | None]:
        """``get`` on the event loop's thread, through a connection of its own that never waits
        for a lock (a WAL reader takes none; SQLITE_BUSY is a StorageError): the reads asked
        during one turn of the loop are read together once its callbacks ran, one statement of
        one step (``sqlite_turn.TurnReads``), cheaper than a hand-over to a reader thread and
        back each (docs/performance.md, "/bid"). ``Durability.ACK`` only: every acknowledged
        write is committed, so it reads what a reader thread would."""
        if not self.batched_reads:
            return super().get_batched(key)
        if self._engine.closed:
            raise StoreUnavailable("sqlite store is closed")
        turn = self._turn
        if turn is None:
            try:
                conn = self._connect(query_only=True, busy_timeout=0.0)
            except sqlite3.Error as exc:
                raise wrap(exc) from exc
            turn = self._turn = TurnReads(conn, self._clock)
        return turn.get(key)

    async def get_entry(self, key: str) -> FieldEntry | None:
        now = self._clock()
        row = await self._engine.read(ops.get_entry, key, now)
        if row is None:
            return None
        value, expires_at = row
        return value, None if expires_at is None else expires_at - now

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return await self._engine.read(ops.get_many, list(keys), self._clock())

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        committed = self._engine.apply(ops.put, key, as_bytes(value), self._expiry(ttl))
        if committed is not None:
            await committed

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        expires_at = self._expiry(ttl)
        return await self._engine.write(
            ops.set_if_absent, key, as_bytes(value), expires_at, self._clock()
        )

    async def write_many(self, writes: Sequence[Write]) -> None:
        rows = self._rows(writes)
        if rows:
            committed = self._engine.apply(ops.write_many, rows, self._clock())
            if committed is not None:
                await committed

    async def swap_many(self, writes: Sequence[Write]) -> list[bytes | None]:
        """One op in the writer: the keys read and written in its transaction (in a batch,
        the reads of every ``swap_many`` share one query, the writes the batch's statement)."""
        rows = self._rows(writes)
        if not rows:
            return []
        held: list[bytes | None] = await self._engine.write(ops.swap_many, rows, self._clock())
        return held

    async def delete(self, key: str) -> bool:
        return await self._engine.write(ops.delete, key, self._clock())

    async def hget(self, key: str, field: str) -> bytes | None:
        return await self._engine.read(ops.hget, key, field, self._clock())

    async def hgetall(self, key: str) -> dict[str, bytes]:
        return await self._engine.read(ops.hgetall, key, self._clock())

    async def hgetall_entries(self, key: str) -> dict[str, FieldEntry]:
        now = self._clock()
        fields = await self._engine.read(ops.hgetall_entries, key, now)
        return {f: (v, None if at is None else at - now) for f, (v, at) in fields.items()}

    async def hset(
        self, key: str, mapping: Mapping[str, bytes], *, ttl: float | None = None
    ) -> None:
        expires_at = self._expiry(ttl)
        fields = {_field(field): (as_bytes(value), expires_at) for field, value in mapping.items()}
        if fields:
            committed = self._engine.apply(ops.hset, key, fields, self._clock())
            if committed is not None:
                await committed

    async def hset_many(self, items: Sequence[FieldWrite]) -> None:
        """One queued op: the fields grouped by key (later wins), merged in the writer."""
        updates = self._updates(items)
        if updates:
            committed = self._engine.apply(ops.hset_many, updates, self._clock())
            if committed is not None:
                await committed

    async def hswap_many(self, items: Sequence[FieldWrite]) -> list[dict[str, bytes]]:
        """One op in the writer, which reads each stored map to merge it anyway."""
        updates = self._updates(items)
        held: dict[str, dict[str, bytes]] = {}
        if updates:
            held = await self._engine.write(ops.hswap_many, updates, self._clock())
        return [
            {name: old[name] for name in mapping if name in old} if (old := held.get(key)) else {}
            for key, mapping, _ in items
        ]

    def _updates(self, items: Sequence[FieldWrite]) -> ops.Updates:
        """The fields to write grouped by key (later wins), with their expiry times (the
        clock read once per call: a batch of the frequency checks has thousands of items of
        one ttl)."""
        updates: ops.Updates = {}
        ttl_of: float | None = None
        expires_at: float | None = None
        now: float | None = None
        for key, mapping, ttl in items:
            if ttl != ttl_of or now is None:
                check_ttl(ttl)
                if now is None:
                    now = self._clock()
                ttl_of, expires_at = ttl, None if ttl is None else now + ttl
            if mapping:
                fields = updates.get(key)
                if fields is None:
                    fields = updates[key] = {}
                for field, value in mapping.items():
                    if type(field) is not str:
                        field = _field(field)
                    if type(value) is not bytes:
                        value = as_bytes(value)
                    fields[field] = (value, expires_at)
        return updates

    async def write_together(
        self, writes: Sequence[Write], field_writes: Sequence[FieldWrite]
    ) -> None:
        """One queued op: the writer runs the plain writes and merges the fields (one
        transaction; in a batch, merged with the other writes as ``write_many`` and
        ``hset_many`` are)."""
        rows = self._rows(writes)
        updates = self._updates(field_writes)
        if rows or updates:
            committed = self._engine.apply(ops.write_together, rows, updates, self._clock())
            if committed is not None:
                await committed

    async def swap_together(
        self,
        writes: Sequence[Write],
        field_writes: Sequence[FieldWrite],
        read_after: Sequence[str] = (),
        also: Sequence[FieldWrite] = (),
    ) -> list[dict[str, bytes]]:
        """One op in the writer, which reads each written map to merge it anyway (in a batch,
        with the other writes' maps), and reads ``read_after`` in the same transaction once
        the batch's writes are in it; ``also`` is merged, not answered."""
        rows = self._rows(writes)
        updates = self._updates(field_writes)
        quiet = self._updates(also) if also else {}
        held: dict[str, dict[str, bytes]] = {}
        after: list[dict[str, bytes]] = []
        if rows or updates or read_after or quiet:
            held, after = await self._engine.write(
                ops.swap_together, rows, updates, self._clock(), tuple(read_after), quiet
            )
        return [
            {name: old[name] for name in mapping if name in old} if (old := held.get(key)) else {}
            for key, mapping, _ in field_writes
        ] + after

    async def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, bytes]]:
        if not keys:
            return []
        return await self._engine.read(ops.hgetall_many, list(keys), self._clock())

    async def hdel(self, key: str, fields: Sequence[str]) -> int:
        if not fields:
            return 0
        return await self._engine.write(ops.hdel, key, list(fields), self._clock())

    async def scan(self, prefix: str, *, batch: int = 1000) -> AsyncIterator[tuple[str, bytes]]:
        """Keys in order, ``batch`` per query; each batch is read at its own moment."""
        async for key, value, _ in self.scan_ttl(prefix, batch=batch):
            yield key, value

    async def scan_ttl(
        self, prefix: str, *, batch: int = 1000, in_order: bool = True
    ) -> AsyncIterator[tuple[str, bytes, float | None]]:
        """A page per query (whatever ``in_order``: SQLite reads its index in key order, a
        page at a time); each page is read at its own moment."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        upper = prefix_upper_bound(prefix)
        start, first = prefix, True
        while True:
            now = self._clock()
            rows = await self._engine.read(ops.scan_page, start, first, upper, batch, now)
            for key, value, expires_at in rows:
                yield key, value, None if expires_at is None else expires_at - now
            if len(rows) < batch:
                return
            start, first = rows[-1][0], False

    async def scan_pages(
        self, prefix: str, *, batch: int = 1000, in_order: bool = True
    ) -> AsyncIterator[Page]:
        """Pages of the query's own rows (``ops.scan_rows``), each read at its own moment, in
        key order whatever ``in_order``."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        upper = prefix_upper_bound(prefix)
        start, first = prefix, True
        while True:
            rows = await self._engine.read(ops.scan_rows, start, first, upper, batch, self._clock())
            if rows:
                yield rows
            if len(rows) < batch:
                return
            start, first = rows[-1][0], False

    async def scan_maps(
        self, prefix: str, *, batch: int = 100, in_order: bool = True
    ) -> AsyncIterator[tuple[str, dict[str, FieldEntry]]]:
        """A page of maps per query, in key order whatever ``in_order``."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        upper = prefix_upper_bound(prefix)
        start: str | None = prefix
        first = True
        while start is not None:
            now = self._clock()
            page = await self._engine.read(ops.scan_maps_page, start, first, upper, batch, now)
            maps, start = page
            first = False
            for key, fields in maps:
                ttls = {f: (v, None if at is None else at - now) for f, (v, at) in fields.items()}
                yield key, ttls

    async def info(self) -> dict[str, str]:
        return {"backend": "sqlite", "path": self.path, "durability": self.durability.value}

    async def purge_expired(self) -> int:
        """Remove every expired plain key and field now; return how many (the writer also
        does it, a chunk at a time)."""
        return await self._engine.write(ops.purge, self._clock())

    async def ping(self) -> None:
        if not self._engine.writer_alive:
            raise StoreUnavailable(
                "sqlite writer thread is not running, or an fsync of its WAL failed"
            )
        try:
            await self._engine.read(ops.ping)
        except StoreUnavailable:
            raise
        except StorageError as exc:
            raise StoreUnavailable(str(exc)) from exc.__cause__

    async def close(self) -> None:
        await self._engine.close()
        if self._turn is not None:
            self._turn.close()
            self._turn = None
        self._close_lock_files()

    def _close_lock_files(self) -> None:
        for fd in (self._writer_lock, self._writer_turn):
            if fd is not None:
                os.close(fd)
        self._writer_lock = self._writer_turn = None


def path_from_url(url: str) -> str:
    """``sqlite:///abs/path`` → ``/abs/path``; ``sqlite://rel/path`` → ``rel/path``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "sqlite":
        raise StorageError(f"not a sqlite URL: {url!r}")
    if "?" in rest or "#" in rest:
        raise StorageError(f"sqlite URL takes no query or fragment: {url!r}")
    path = unquote(rest)
    if path in ("", "/"):
        raise StorageError(f"sqlite URL has no path: {url!r}")
    if path.lstrip("/") == ":memory:" or path.startswith("file:"):
        raise StorageError(f"sqlite URL must name a file (no in-memory database): {url!r}")
    return path


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (None: no bound).

    Increments the last code point that can be incremented; SQLite compares TEXT as UTF-8
    bytes, which orders like code points, so ``prefix <= key < bound`` is the prefix range.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored: skip them
                code = 0xE000
            return "".join(chars) + chr(code)
    return None


def _field(name: object) -> str:
    if isinstance(name, str):
        return name
    raise TypeError(f"field names are str, not {type(name).__name__}")
