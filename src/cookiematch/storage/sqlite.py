"""Embedded backend: SQLite in WAL mode, one writer thread with group commit, reader threads.

    event loop ──(op, future)──▶ write queue ──▶ writer thread: BEGIN; op; op; …; COMMIT
               ◀── one call_soon_threadsafe per batch settles its futures ──┘
    event loop ──(op, future)──▶ read queue ──▶ reader threads, one connection each

No SQLite call runs on the event loop. The writer drains everything queued and applies it in
one transaction, so under ``Durability.ACK`` (``synchronous=FULL``: the WAL is fsynced at each
commit) one fsync covers a whole batch, and a write's future resolves only after its commit.
If a batch fails, it is rolled back and its ops are retried one transaction each, so a bad op
fails alone. Under ``Durability.ASYNC`` (``synchronous=NORMAL``) ``set``, ``hset`` and
``write_many`` return once queued while fewer than ``max_pending`` writes wait; beyond that
they wait for their commit (backpressure). Reads then wait until the writes queued before them
are committed, so a coroutine reads its own writes. WAL readers never block the writer.

A field map is one row (``fm``: the fields packed with their values and expiries, see
``storage.packed``); writes to it are read-modify-write in the writer thread, which makes them
atomic. Expired values and fields are invisible to reads (against the injected clock) and
purged by the writer every ``purge_interval`` seconds, a bounded chunk at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import operator
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote

import msgspec

from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.storage import packed
from cookiematch.storage.base import Clock, Durability, FieldEntry, FieldWrite, Store, Write
from cookiematch.storage.packed import Fields

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[..., Any]
# (op, args, future or None when nobody waits, sequence number); None stops the thread.
Queued = tuple[Op, tuple[Any, ...], asyncio.Future[Any] | None, int]
Item = Queued | None
Result = tuple[asyncio.Future[Any], bool, Any]  # (future, ok, value or StorageError)

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, expires_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS fm (
    key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL, expires_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fm_expiry ON fm (expires_at) WHERE expires_at IS NOT NULL;
"""
"""``fm``: one row per field map, ``value`` packed (``storage.packed``: every field with its
value and expiry), ``expires_at`` the earliest field expiry (NULL if no field expires)."""
_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_PUT_MAP = (
    "INSERT INTO fm VALUES (?, ?, ?) ON CONFLICT (key)"
    " DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)
_PUT_MAP_HEAD = "INSERT INTO fm VALUES "
_PUT_MAP_TAIL = (
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)
_PUT_KV_HEAD = "INSERT OR REPLACE INTO kv VALUES "
ROWS_PER_STATEMENT = 300
"""Rows per multi-row ``INSERT … VALUES (…), (…)`` (3 parameters each, under SQLite's oldest
limit of 999). Python's sqlite3 releases the GIL around every ``sqlite3_step``: one step per
row (``executemany``) lets a busy event loop take the GIL back after each row, and the writer
then waits up to the interpreter's switch interval (5 ms) for every row. One statement for many
rows is one step: a batch of writes costs a few GIL hand-overs instead of one per row."""
_MAX_BATCH = 10_000  # ops per transaction (writer) or per wake-up (readers)
_IN_CHUNK = 500  # keys per ``IN (…)`` query
PURGE_CHUNK = 1000  # expired rows per table per periodic purge
MIGRATE_CHUNK = 10_000  # maps per insert while migrating
CACHE_MIB = 64  # the writer's page cache (SQLite's default is 2 MiB): random inserts stay in RAM
BUSY_TIMEOUT = 10.0  # seconds a connection waits for another process's write lock
BULK_BUSY_TIMEOUT = 600.0
"""The wait of an ASYNC (bulk) store: several ingest workers share the file, and a batch's
transaction holds the write lock for seconds; giving up would lose the queued writes."""
MMAP_MIB = 256  # reads through mmap (every connection): no copy into each reader's cache

MapRow = tuple[bytes, float | None]  # a stored map: (packed fields, earliest expiry)
Updates = dict[str, Fields]  # fields to set, by key: field → (value, expires_at)


# --- ops: run on a worker thread with its connection -------------------------------------


def _live(expires_at: float | None, now: float) -> bool:
    return expires_at is None or expires_at > now


def _get(c: sqlite3.Connection, key: str, now: float) -> bytes | None:
    row = c.execute(f"SELECT value FROM kv WHERE key = ? AND {_LIVE}", (key, now)).fetchone()
    return None if row is None else row[0]


def _get_many(c: sqlite3.Connection, keys: list[str], now: float) -> list[bytes | None]:
    found: dict[str, bytes] = {}
    for i in range(0, len(keys), _IN_CHUNK):
        chunk = keys[i : i + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT key, value FROM kv WHERE key IN ({marks}) AND {_LIVE}"
        found.update(c.execute(sql, (*chunk, now)).fetchall())
    return [found.get(key) for key in keys]


def _map_row(c: sqlite3.Connection, key: str) -> MapRow | None:
    row: MapRow | None = c.execute(
        "SELECT value, expires_at FROM fm WHERE key = ?", (key,)
    ).fetchone()
    return row


_MAP_ROWS_AS_JSON = (
    "SELECT json_group_array(json_array(key, hex(value),"
    " iif(expires_at IS NULL, NULL, printf('%!.17g', expires_at))))"
    " FROM fm WHERE key IN ({marks})"
)
_map_rows_json = msgspec.json.Decoder(list[tuple[str, str, str | None]])


def _map_rows(c: sqlite3.Connection, keys: list[str]) -> dict[str, MapRow]:
    """The stored maps of ``keys`` (sorted, distinct: the index is walked in order).

    Each chunk of keys comes back as one JSON row (values in hex, expiries printed exactly):
    one ``sqlite3_step`` instead of one per row, for the reason given at ROWS_PER_STATEMENT.
    """
    found: dict[str, MapRow] = {}
    for i in range(0, len(keys), _IN_CHUNK):
        chunk = keys[i : i + _IN_CHUNK]
        sql = _MAP_ROWS_AS_JSON.format(marks=",".join("?" * len(chunk)))
        for key, hexed, at in _map_rows_json.decode(c.execute(sql, chunk).fetchone()[0]):
            found[key] = (bytes.fromhex(hexed), None if at is None else float(at))
    return found


def _hget(c: sqlite3.Connection, key: str, field: str, now: float) -> bytes | None:
    row = _map_row(c, key)
    if row is None:
        return None
    entry = packed.unpack(row[0]).get(field)
    return None if entry is None or not _live(entry[1], now) else entry[0]


def _hgetall(c: sqlite3.Connection, key: str, now: float) -> dict[str, bytes]:
    row = _map_row(c, key)
    return {} if row is None else packed.live_values(row[0], row[1], now)


def _hgetall_many(c: sqlite3.Connection, keys: list[str], now: float) -> list[dict[str, bytes]]:
    rows = _map_rows(c, sorted(set(keys)))
    found = {key: packed.live_values(blob, at, now) for key, (blob, at) in rows.items()}
    return [dict(found.get(key, {})) for key in keys]


def _range(start: str, first: bool, upper: str | None) -> tuple[str, tuple[str, ...]]:
    lower = "key >= ?" if first else "key > ?"
    if upper is None:
        return lower, (start,)
    return f"{lower} AND key < ?", (start, upper)


def _scan_page(
    c: sqlite3.Connection, start: str, first: bool, upper: str | None, limit: int, now: float
) -> list[tuple[str, bytes, float | None]]:
    where, args = _range(start, first, upper)
    sql = f"SELECT key, value, expires_at FROM kv WHERE {where} AND {_LIVE} ORDER BY key LIMIT ?"
    return c.execute(sql, (*args, now, limit)).fetchall()


def _scan_maps_page(
    c: sqlite3.Connection, start: str, first: bool, upper: str | None, limit: int, now: float
) -> tuple[list[tuple[str, Fields]], str | None]:
    """The next ``limit`` maps in key order with their live fields (maps with none left are
    skipped), and the last key read if there may be more (else None)."""
    where, args = _range(start, first, upper)
    sql = f"SELECT key, value, expires_at FROM fm WHERE {where} ORDER BY key LIMIT ?"
    rows = c.execute(sql, (*args, limit)).fetchall()
    maps = [(key, packed.live_entries(blob, at, now)) for key, blob, at in rows]
    return [item for item in maps if item[1]], rows[-1][0] if len(rows) == limit else None


def _ping(c: sqlite3.Connection) -> None:
    c.execute("SELECT 1").fetchone()


def _set(c: sqlite3.Connection, key: str, value: bytes, expires_at: float | None) -> None:
    c.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (key, value, expires_at))


_SET_IF_ABSENT = (
    "INSERT INTO kv VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE"
    " SET value = excluded.value, expires_at = excluded.expires_at"
    " WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ? RETURNING 1"
)


def _set_if_absent(
    c: sqlite3.Connection, key: str, value: bytes, expires_at: float | None, now: float
) -> bool:
    """One statement: insert, or replace a value expired at ``now``; True if it wrote."""
    return c.execute(_SET_IF_ABSENT, (key, value, expires_at, now)).fetchone() is not None


def _put_rows(
    c: sqlite3.Connection, head: str, rows: Sequence[tuple[Any, ...]], tail: str = ""
) -> None:
    """``head`` + ``VALUES (?, ?, ?), …`` + ``tail`` for ``rows`` (3 values each), in order,
    ``ROWS_PER_STATEMENT`` rows per statement (see there: one GIL hand-over per statement)."""
    for i in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[i : i + ROWS_PER_STATEMENT]
        c.execute(_values_sql(head, len(chunk), tail), [value for row in chunk for value in row])


@functools.cache  # bounded: 3 statements x ROWS_PER_STATEMENT sizes
def _values_sql(head: str, rows: int, tail: str) -> str:
    return head + ",".join(["(?,?,?)"] * rows) + tail


def _set_many(c: sqlite3.Connection, rows: list[tuple[str, bytes, float | None]]) -> None:
    """Several ``_set`` in order (a later row for a key wins), in multi-row statements."""
    _put_rows(c, _PUT_KV_HEAD, rows)


def _delete(c: sqlite3.Connection, key: str, now: float) -> bool:
    row = c.execute("DELETE FROM kv WHERE key = ? RETURNING expires_at", (key,)).fetchone()
    live = row is not None and _live(row[0], now)
    row = c.execute("DELETE FROM fm WHERE key = ? RETURNING value, expires_at", (key,)).fetchone()
    if row is not None and not live:
        live = _live(row[1], now) or bool(packed.live_entries(row[0], row[1], now))
    return live


def _write_many(
    c: sqlite3.Connection, rows: list[tuple[str, bytes | None, float | None]], now: float
) -> None:
    sets: list[tuple[str, bytes, float | None]] = []
    for key, value, expires_at in rows:
        if value is None:
            _set_many(c, sets)
            sets = []
            _delete(c, key, now)
        else:
            sets.append((key, value, expires_at))
    _set_many(c, sets)


def _hset(c: sqlite3.Connection, key: str, fields: Fields, now: float) -> None:
    """Read-modify-write of one map (the single writer makes it atomic)."""
    row = _map_row(c, key)
    if row is not None:
        fields = packed.merge(row[0], row[1], fields, now)
    c.execute(_PUT_MAP, (key, *packed.pack(fields)))


def _hset_many(c: sqlite3.Connection, updates: Updates, now: float) -> None:
    """Merge each key's new fields into its stored map; expired fields are dropped.

    The stored maps are read and the merged ones written in key order, so the B-tree is
    walked once instead of at random places; multi-row statements write them all.
    """
    names = sorted(updates)
    stored = _map_rows(c, names)
    merge, pack = packed.merge, packed.pack
    rows: list[tuple[str, bytes, float | None]] = []
    for key in names:
        fields = updates[key]
        row = stored.get(key)
        if row is not None:
            fields = merge(row[0], row[1], fields, now)
        rows.append((key, *pack(fields)))
    _put_rows(c, _PUT_MAP_HEAD, rows, _PUT_MAP_TAIL)


def _hdel(c: sqlite3.Connection, key: str, fields: list[str], now: float) -> int:
    row = _map_row(c, key)
    if row is None:
        return 0
    stored = packed.unpack(row[0])
    removed = 0
    changed = False
    for field in fields:
        entry = stored.pop(field, None)
        if entry is not None:
            changed = True
            removed += _live(entry[1], now)
    if not _live(row[1], now):
        changed = packed.drop_expired(stored, now) > 0 or changed
    if not stored:
        c.execute("DELETE FROM fm WHERE key = ?", (key,))
    elif changed:
        c.execute(_PUT_MAP, (key, *packed.pack(stored)))
    return removed


def _purge_maps(c: sqlite3.Connection, now: float, limit: int) -> tuple[int, int]:
    """Rewrite up to ``limit`` maps holding expired fields without them (delete the maps left
    empty); return (fields removed, maps visited)."""
    rows = c.execute(
        "SELECT key, value FROM fm WHERE expires_at <= ? LIMIT ?", (now, limit)
    ).fetchall()
    rows.sort()
    removed = 0
    gone: list[tuple[str]] = []
    kept: list[tuple[bytes, float | None, str]] = []
    for key, blob in rows:
        fields = packed.unpack(blob)
        removed += packed.drop_expired(fields, now)
        if fields:
            kept.append((*packed.pack(fields), key))
        else:
            gone.append((key,))
    c.executemany("DELETE FROM fm WHERE key = ?", gone)
    c.executemany("UPDATE fm SET value = ?, expires_at = ? WHERE key = ?", kept)
    return removed, len(rows)


def _purge_some(c: sqlite3.Connection, now: float, limit: int) -> tuple[int, bool]:
    """Up to ``limit`` expired plain keys and maps holding expired fields; return (plain keys
    and fields removed, whether more may be left)."""
    sql = "DELETE FROM kv WHERE key IN (SELECT key FROM kv WHERE expires_at <= ? LIMIT ?)"
    keys = c.execute(sql, (now, limit)).rowcount
    fields, maps = _purge_maps(c, now, limit)
    return keys + fields, keys >= limit or maps >= limit


def _purge(c: sqlite3.Connection, now: float) -> int:
    """Every expired plain key and field; return how many."""
    removed = c.execute("DELETE FROM kv WHERE expires_at <= ?", (now,)).rowcount
    while True:
        fields, maps = _purge_maps(c, now, PURGE_CHUNK)
        removed += fields
        if maps < PURGE_CHUNK:
            return removed


def _create(c: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        c.execute(statement)


def _migrate_v1(c: sqlite3.Connection, now: float) -> None:
    """Schema 1 → 2: ``fm`` rows per (key, field) become one packed row per key.

    Runs inside the caller's transaction. The old rows are read in primary-key order (grouped
    by key) and inserted ``MIGRATE_CHUNK`` maps at a time; expired fields are left behind.
    """
    c.execute("DROP INDEX IF EXISTS fm_expiry")
    c.execute("ALTER TABLE fm RENAME TO fm_v1")
    _create(c)
    read = c.execute(
        f"SELECT key, field, value, expires_at FROM fm_v1 WHERE {_LIVE} ORDER BY key, field",
        (now,),
    )
    chunk: list[tuple[str, bytes, float | None]] = []
    for key, group in itertools.groupby(read, operator.itemgetter(0)):
        fields: Fields = {field: (value, at) for _, field, value, at in group}
        chunk.append((key, *packed.pack(fields)))
        if len(chunk) >= MIGRATE_CHUNK:
            c.executemany(_PUT_MAP, chunk)
            chunk = []
    c.executemany(_PUT_MAP, chunk)
    c.execute("DROP TABLE fm_v1")


# --- helpers --------------------------------------------------------------------------------


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


def _wrap(exc: BaseException) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    err = StorageError(f"sqlite: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def _blob(value: object) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"store values are bytes, not {type(value).__name__}")


def _field(name: object) -> str:
    if isinstance(name, str):
        return name
    raise TypeError(f"field names are str, not {type(name).__name__}")


def _settle(results: list[Result]) -> None:
    for fut, ok, value in results:
        if not fut.done():  # a cancelled waiter has gone away
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)


def _deliver(results: list[Result]) -> None:
    """Settle futures from a worker thread: one loop wake-up per loop per batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Result]] = {}
    for result in results:
        by_loop.setdefault(result[0].get_loop(), []).append(result)
    for loop, batch in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
            loop.call_soon_threadsafe(_settle, batch)


_ONE_QUERY_READS = frozenset({_get, _hget, _hgetall})
_CHUNKED_READS = frozenset({_get_many, _hgetall_many})


def _one_query(ops: list[Queued]) -> bool:
    """A batch that is a single read of one query: its own snapshot, no BEGIN/COMMIT (two
    fewer GIL hand-overs, see ROWS_PER_STATEMENT)."""
    if len(ops) != 1:
        return False
    op, args = ops[0][0], ops[0][1]
    return op in _ONE_QUERY_READS or (op in _CHUNKED_READS and len(args[0]) <= _IN_CHUNK)


def _run_reads(conn: sqlite3.Connection, ops: list[Queued]) -> list[Result]:
    """Run a batch of reads in one read transaction: one snapshot, one WAL read lock."""
    results: list[Result] = []
    if not _one_query(ops):
        with contextlib.suppress(sqlite3.Error):  # without it, each read takes its own snapshot
            conn.execute("BEGIN")
    for op, args, fut, _ in ops:
        assert fut is not None  # every read is awaited
        try:
            results.append((fut, True, op(conn, *args)))
        except Exception as exc:
            results.append((fut, False, _wrap(exc)))
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("COMMIT")
    return results


def _plain_rows(ops: list[Queued]) -> list[tuple[str, bytes, float | None]] | None:
    """The rows of a batch made only of plain-key writes (``set``, ``write_many`` without
    deletes) that fit one statement; None for any other batch."""
    rows: list[tuple[str, bytes, float | None]] = []
    for op, args, _, _ in ops:
        if op is _set:
            rows.append(args)
        elif op is _write_many and all(row[1] is not None for row in args[0]):
            rows += args[0]
        else:
            return None
        if len(rows) > ROWS_PER_STATEMENT:
            return None
    return rows


def _run_batch(c: sqlite3.Connection, ops: list[Queued]) -> list[tuple[bool, Any]]:
    """Run a batch of writes; consecutive ``hset`` ops are merged into one ``_hset_many``
    (same result: later wins, per field) so their maps are read and written in key order, and
    consecutive ``set`` ops into one ``_set_many`` (a few statements for the lot)."""
    results: list[tuple[bool, Any]] = []
    i = 0
    while i < len(ops):
        op, args = ops[i][0], ops[i][1]
        j = i + 1
        while j < len(ops) and ops[j][0] is op and (op is _hset or op is _set):
            j += 1
        if j - i == 1:
            results.append((True, op(c, *args)))
        elif op is _set:
            _set_many(c, [item[1] for item in ops[i:j]])
            results += [(True, None)] * (j - i)
        else:
            updates: Updates = {}
            for _, (key, fields, _), _, _ in ops[i:j]:
                merged = updates.get(key)
                if merged is None:
                    updates[key] = fields
                else:
                    updates[key] = {**merged, **fields}
            _hset_many(c, updates, ops[j - 1][1][2])
            results += [(True, None)] * (j - i)
        i = j
    return results


def _drain(q: queue.SimpleQueue[Item], first: Item) -> tuple[list[Queued], bool]:
    """``first`` plus whatever is queued, up to the stop marker (returns: batch, stop)."""
    if first is None:
        return [], True
    batch = [first]
    while len(batch) < _MAX_BATCH:
        try:
            item = q.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return batch, True
        batch.append(item)
    return batch, False


# --- the store ------------------------------------------------------------------------------


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
        self._cache_mib = CACHE_MIB if cache_mib is None else cache_mib
        self._mmap_mib = MMAP_MIB if mmap_mib is None else mmap_mib
        self._async = durability is Durability.ASYNC
        if busy_timeout is None:
            busy_timeout = BULK_BUSY_TIMEOUT if self._async else BUSY_TIMEOUT
        self._busy_timeout = busy_timeout
        self.durability = durability
        self._clock = clock
        self._max_pending = max_pending
        self._purge_interval = purge_interval
        self._next_purge = time.monotonic() + (purge_interval or 0.0)
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self._seqs = itertools.count(1)
        self._last_seq = 0  # last write submitted
        self._committed = 0  # last write committed (or failed)
        self._writer_done = False
        self._cond = threading.Condition()
        self._submit_lock = threading.Lock()
        self._wq: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._rq: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.commits = 0  # transactions committed by the writer (statistics)
        self.writes = 0  # write ops those transactions carried
        self._lost = 0  # queued writes nobody waited for that failed
        conns: list[sqlite3.Connection] = []
        try:
            conns.append(self._open_writer())
            conns += [self._connect(query_only=True) for _ in range(readers)]
        except (sqlite3.Error, OSError, ValueError) as exc:
            for conn in conns:
                conn.close()
            raise StoreUnavailable(f"cannot open sqlite store {path!r}: {exc}") from exc
        self._wconn = conns[0]
        self._threads = [threading.Thread(target=self._write_loop, daemon=True, name="sqlite-w")]
        self._threads += [
            threading.Thread(target=self._read_loop, args=(c,), daemon=True, name=f"sqlite-r{i}")
            for i, c in enumerate(conns[1:])
        ]
        for thread in self._threads:
            thread.start()

    @property
    def lost(self) -> int:
        """Queued writes nobody waited for (``Durability.ASYNC``) that failed (each logged)."""
        return self._lost

    @classmethod
    def from_url(
        cls, url: str, *, durability: Durability = Durability.ACK, clock: Clock = time.time
    ) -> SQLiteStore:
        return cls(path_from_url(url), durability=durability, clock=clock)

    def _connect(self, *, query_only: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        if query_only:
            conn.execute("PRAGMA query_only = ON")
        conn.execute(f"PRAGMA mmap_size = {self._mmap_mib * 2**20}")
        conn.execute("PRAGMA temp_store = MEMORY")
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL journal mode (got {mode!r})")
            sync = "NORMAL" if self._async else "FULL"
            conn.execute(f"PRAGMA synchronous = {sync}")
            conn.execute("PRAGMA journal_size_limit = 67108864")  # trim the WAL after checkpoints
            conn.execute(f"PRAGMA cache_size = {-self._cache_mib * 1024}")  # negative: KiB
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self._upgrade(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """Create the tables, or migrate an older schema, in one transaction."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # now under the lock
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"schema version {version} is newer than this code")
            if version == 1:
                _migrate_v1(conn, self._clock())
            else:
                _create(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # --- submitting ops (event loop thread) ----------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("sqlite store is closed")

    def _read(self, op: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        self._check_open()
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._rq.put((op, args, fut, self._last_seq if self._async else 0))
        return fut

    def _queue_write(self, op: Op, args: tuple[Any, ...], fut: asyncio.Future[Any] | None) -> None:
        self._check_open()
        with self._submit_lock:  # sequence numbers enter the queue in order
            seq = self._last_seq = next(self._seqs)
            self._wq.put((op, args, fut, seq))

    def _write(self, op: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue a write; its future resolves once committed."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue_write(op, args, fut)
        return fut

    async def _apply(self, op: Op, *args: Any) -> None:
        """Queue a write; wait for its commit unless ASYNC and fewer than max_pending queued."""
        if self._async and self._wq.qsize() < self._max_pending:
            self._queue_write(op, args, None)
        else:
            await self._write(op, *args)

    def _expiry(self, ttl: float | None) -> float | None:
        if ttl is None:
            return None
        if not (ttl > 0 and math.isfinite(ttl)):
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        return self._clock() + ttl

    # --- Store ---------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return await self._read(_get, key, self._clock())

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return await self._read(_get_many, list(keys), self._clock())

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._apply(_set, key, _blob(value), self._expiry(ttl))

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        expires_at = self._expiry(ttl)
        return await self._write(_set_if_absent, key, _blob(value), expires_at, self._clock())

    async def write_many(self, writes: Sequence[Write]) -> None:
        rows = [
            (w.key, None if w.value is None else _blob(w.value), self._expiry(w.ttl))
            for w in writes
        ]
        if rows:
            await self._apply(_write_many, rows, self._clock())

    async def delete(self, key: str) -> bool:
        return await self._write(_delete, key, self._clock())

    async def hget(self, key: str, field: str) -> bytes | None:
        return await self._read(_hget, key, field, self._clock())

    async def hgetall(self, key: str) -> dict[str, bytes]:
        return await self._read(_hgetall, key, self._clock())

    async def hset(
        self, key: str, mapping: Mapping[str, bytes], *, ttl: float | None = None
    ) -> None:
        expires_at = self._expiry(ttl)
        fields = {_field(field): (_blob(value), expires_at) for field, value in mapping.items()}
        if fields:
            await self._apply(_hset, key, fields, self._clock())

    async def hset_many(self, items: Sequence[FieldWrite]) -> None:
        """One queued op: the fields grouped by key (later wins), merged in the writer."""
        updates: Updates = {}
        for key, mapping, ttl in items:
            expires_at = self._expiry(ttl)
            if mapping:
                fields = updates.get(key)
                if fields is None:
                    fields = updates[key] = {}
                for field, value in mapping.items():
                    fields[_field(field)] = (_blob(value), expires_at)
        if updates:
            await self._apply(_hset_many, updates, self._clock())

    async def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, bytes]]:
        if not keys:
            return []
        return await self._read(_hgetall_many, list(keys), self._clock())

    async def hdel(self, key: str, fields: Sequence[str]) -> int:
        if not fields:
            return 0
        return await self._write(_hdel, key, list(fields), self._clock())

    async def scan(self, prefix: str, *, batch: int = 1000) -> AsyncIterator[tuple[str, bytes]]:
        """Keys in order, ``batch`` per query; each batch is read at its own moment."""
        async for key, value, _ in self.scan_ttl(prefix, batch=batch):
            yield key, value

    async def scan_ttl(
        self, prefix: str, *, batch: int = 1000
    ) -> AsyncIterator[tuple[str, bytes, float | None]]:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        upper = prefix_upper_bound(prefix)
        start, first = prefix, True
        while True:
            now = self._clock()
            rows = await self._read(_scan_page, start, first, upper, batch, now)
            for key, value, expires_at in rows:
                yield key, value, None if expires_at is None else expires_at - now
            if len(rows) < batch:
                return
            start, first = rows[-1][0], False

    async def scan_maps(
        self, prefix: str, *, batch: int = 100
    ) -> AsyncIterator[tuple[str, dict[str, FieldEntry]]]:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        upper = prefix_upper_bound(prefix)
        start: str | None = prefix
        first = True
        while start is not None:
            now = self._clock()
            maps, start = await self._read(_scan_maps_page, start, first, upper, batch, now)
            first = False
            for key, fields in maps:
                ttls = {f: (v, None if at is None else at - now) for f, (v, at) in fields.items()}
                yield key, ttls

    async def info(self) -> dict[str, str]:
        return {"backend": "sqlite", "path": self.path, "durability": self.durability.value}

    async def purge_expired(self) -> int:
        """Remove every expired plain key and field now; return how many (the writer also
        does it, a chunk at a time)."""
        return await self._write(_purge, self._clock())

    async def ping(self) -> None:
        if not self._threads[0].is_alive():
            raise StoreUnavailable("sqlite writer thread is not running")
        try:
            await self._read(_ping)
        except StoreUnavailable:
            raise
        except StorageError as exc:
            raise StoreUnavailable(str(exc)) from exc.__cause__

    async def close(self) -> None:
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.get_running_loop().run_in_executor(None, self._shutdown)
        await asyncio.shield(self._closing)

    def _shutdown(self) -> None:
        self._wq.put(None)
        self._threads[0].join()
        for _ in self._threads[1:]:
            self._rq.put(None)
        for thread in self._threads[1:]:
            thread.join()

    # --- writer thread -------------------------------------------------------------------

    def _write_loop(self) -> None:
        try:
            while True:
                timeout = None
                if self._purge_interval:
                    timeout = max(0.0, self._next_purge - time.monotonic())
                try:
                    first = self._wq.get(timeout=timeout)
                except queue.Empty:
                    pass
                else:
                    batch, stop = _drain(self._wq, first)
                    if batch:
                        self._commit_batch(batch)
                    if stop:
                        break
                if self._purge_interval and time.monotonic() >= self._next_purge:
                    self._purge_chunk()
        finally:
            self._closed = True  # also if this thread died: fail fast rather than hang
            with self._cond:
                self._writer_done = True
                self._cond.notify_all()
            self._fail_leftovers(self._wq)
            self._wconn.close()

    def _commit_batch(self, ops: list[Queued]) -> None:
        conn = self._wconn
        try:
            rows = _plain_rows(ops)
            if rows is not None:  # one statement is its own transaction: one step, one commit
                _set_many(conn, rows)
                results: list[tuple[bool, Any]] = [(True, None)] * len(ops)
            else:
                conn.execute("BEGIN IMMEDIATE")
                results = _run_batch(conn, ops)
                conn.execute("COMMIT")
            self.commits += 1
        except Exception:
            self._rollback()
            results = [self._commit_one(op, args) for op, args, _, _ in ops]
        self.writes += len(ops)
        with self._cond:
            self._committed = max(self._committed, ops[-1][3])
            self._cond.notify_all()
        waiting: list[Result] = []
        for (_, _, fut, _), (ok, value) in zip(ops, results, strict=True):
            if fut is not None:
                waiting.append((fut, ok, value))
            elif not ok:
                self._lost += 1
                log.error("sqlite store: a queued write failed: %s", value)
        if waiting:
            _deliver(waiting)

    def _commit_one(self, op: Op, args: tuple[Any, ...]) -> tuple[bool, Any]:
        conn = self._wconn
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = op(conn, *args)
            conn.execute("COMMIT")
            self.commits += 1
            return True, result
        except Exception as exc:
            self._rollback()
            return False, _wrap(exc)

    def _rollback(self) -> None:
        try:
            if self._wconn.in_transaction:
                self._wconn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("sqlite store: rollback failed")

    def _purge_chunk(self) -> None:
        ok, result = self._commit_one(_purge_some, (self._clock(), PURGE_CHUNK))
        if not ok:
            log.error("sqlite store: purge failed: %s", result)
        more = ok and result[1]
        self._next_purge = time.monotonic() + (0.0 if more else self._purge_interval or 0.0)

    # --- reader threads ------------------------------------------------------------------

    def _read_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                ops, stop = _drain(self._rq, self._rq.get())
                if ops:
                    self._wait_committed(max(item[3] for item in ops))
                    _deliver(_run_reads(conn, ops))
                if stop:
                    break
        finally:
            conn.close()

    def _wait_committed(self, seq: int) -> None:
        """Block until the writes submitted up to ``seq`` are committed (ASYNC mode)."""
        if seq > self._committed:
            with self._cond:
                self._cond.wait_for(lambda: self._committed >= seq or self._writer_done)

    def _fail_leftovers(self, q: queue.SimpleQueue[Item]) -> None:
        closed = StoreUnavailable("sqlite store is closed")
        leftovers: list[Result] = []
        while True:
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if item is not None and item[2] is not None:
                leftovers.append((item[2], False, closed))
        if leftovers:
            _deliver(leftovers)
