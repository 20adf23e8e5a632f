"""The SQLite store's file: its schema (version 2), the migration from version 1, and the SQL
text the operations (``sqlite_ops``) run.

    kv (key, value, expires_at)   plain values
    fm (key, value, expires_at)   field maps, one row per key, fields packed (``storage.packed``)

The schema version is ``PRAGMA user_version``; ``upgrade`` creates the tables in an empty file
or migrates an older one, in one transaction, and refuses a newer one.
"""

from __future__ import annotations

import itertools
import operator
import sqlite3

from cookiematch.clock import Clock
from cookiematch.storage import packed
from cookiematch.storage.packed import Fields

SCHEMA_VERSION = 2
SCHEMA = """
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

MIGRATE_CHUNK = 10_000  # maps per insert while migrating

# --- SQL text --------------------------------------------------------------------------------
# ``{marks}``: one ``?`` per key of an ``IN (…)`` list; ``{where}``: a key range (``key_range``).

LIVE = "(expires_at IS NULL OR expires_at > ?)"
"""A row not expired at the moment bound to its ``?``."""

GET = f"SELECT value FROM kv WHERE key = ? AND {LIVE}"
GET_ENTRY = f"SELECT value, expires_at FROM kv WHERE key = ? AND {LIVE}"
GET_MANY = "SELECT key, value FROM kv WHERE key IN ({marks}) AND " + LIVE
GET_MANY_AS_JSON = (
    "SELECT json_group_array(json_array(key, hex(value))) FROM kv WHERE key IN ({marks}) AND "
    + LIVE
)
"""The live values of a list of keys as one JSON row of ``[key, hex(value)]`` pairs."""
GET_ROWS = "SELECT key, value, expires_at FROM kv WHERE key IN ({marks})"
"""Values with their expiry, live or not: the reads of a batch, each judged at its own time."""
SCAN = "SELECT key, value, expires_at FROM kv WHERE {where} AND " + LIVE + " ORDER BY key LIMIT ?"
SCAN_ROWS = "SELECT key, value FROM kv WHERE {where} AND " + LIVE + " ORDER BY key LIMIT ?"
PING = "SELECT 1"
MMAP_SIZE = "PRAGMA mmap_size"
PUT = "INSERT OR REPLACE INTO kv VALUES (?, ?, ?)"
PUT_HEAD = "INSERT OR REPLACE INTO kv VALUES "
"""Followed by ``(?,?,?)`` once per row (``sqlite_ops._put_rows``)."""
SET_IF_ABSENT = (
    "INSERT INTO kv VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE"
    " SET value = excluded.value, expires_at = excluded.expires_at"
    " WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ? RETURNING 1"
)
DELETE = "DELETE FROM kv WHERE key = ? RETURNING expires_at"
PURGE_SOME = "DELETE FROM kv WHERE key IN (SELECT key FROM kv WHERE expires_at <= ? LIMIT ?)"
PURGE = "DELETE FROM kv WHERE expires_at <= ?"

GET_MAP = "SELECT value, expires_at FROM fm WHERE key = ?"
GET_MAPS_AS_JSON = (
    "SELECT json_group_array(json_array(key, hex(value),"
    " iif(expires_at IS NULL, NULL, printf('%!.17g', expires_at))))"
    " FROM fm WHERE key IN ({marks})"
)
"""The maps of a list of keys as one JSON row: values in hex, expiries printed exactly."""
SCAN_MAPS = "SELECT key, value, expires_at FROM fm WHERE {where} ORDER BY key LIMIT ?"
PUT_MAP = (
    "INSERT INTO fm VALUES (?, ?, ?) ON CONFLICT (key)"
    " DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)
PUT_MAP_HEAD = "INSERT INTO fm VALUES "
PUT_MAP_TAIL = (
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)
"""``PUT_MAP_HEAD`` + ``(?,?,?)`` once per row + ``PUT_MAP_TAIL`` (``sqlite_ops._put_rows``)."""
DELETE_MAP = "DELETE FROM fm WHERE key = ?"
DELETE_MAP_RETURNING = "DELETE FROM fm WHERE key = ? RETURNING value, expires_at"
UPDATE_MAP = "UPDATE fm SET value = ?, expires_at = ? WHERE key = ?"
EXPIRED_MAPS = "SELECT key, value FROM fm WHERE expires_at <= ? LIMIT ?"


def marks(count: int) -> str:
    """``?,?,…``: the placeholders of an ``IN (…)`` list of ``count`` values."""
    return ",".join("?" * count)


def key_range(start: str, first: bool, upper: str | None) -> tuple[str, tuple[str, ...]]:
    """The ``{where}`` of a page: keys from ``start`` (included if ``first``) below ``upper``
    (None: no bound), and its parameters."""
    lower = "key >= ?" if first else "key > ?"
    if upper is None:
        return lower, (start,)
    return f"{lower} AND key < ?", (start, upper)


# --- creating and migrating ------------------------------------------------------------------


def upgrade(c: sqlite3.Connection, clock: Clock) -> None:
    """Create the tables, or migrate an older schema (fields expired on ``clock`` are left
    behind), in one transaction; refuse a schema newer than this code."""
    c.execute("BEGIN IMMEDIATE")
    try:
        version = c.execute("PRAGMA user_version").fetchone()[0]  # now under the lock
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this code")
        if version == 1:
            migrate_v1(c, clock())
        else:
            create(c)
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        c.execute("COMMIT")
    except BaseException:
        if c.in_transaction:
            c.execute("ROLLBACK")
        raise


def create(c: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        c.execute(statement)


def migrate_v1(c: sqlite3.Connection, now: float) -> None:
    """Schema 1 → 2: ``fm`` rows per (key, field) become one packed row per key.

    Runs inside the caller's transaction. The old rows are read in primary-key order (grouped
    by key) and inserted ``MIGRATE_CHUNK`` maps at a time; expired fields are left behind.
    """
    c.execute("DROP INDEX IF EXISTS fm_expiry")
    c.execute("ALTER TABLE fm RENAME TO fm_v1")
    create(c)
    read = c.execute(
        f"SELECT key, field, value, expires_at FROM fm_v1 WHERE {LIVE} ORDER BY key, field",
        (now,),
    )
    chunk: list[tuple[str, bytes, float | None]] = []
    for key, group in itertools.groupby(read, operator.itemgetter(0)):
        fields: Fields = {field: (value, at) for _, field, value, at in group}
        chunk.append((key, *packed.pack(fields)))
        if len(chunk) >= MIGRATE_CHUNK:
            c.executemany(PUT_MAP, chunk)
            chunk = []
    c.executemany(PUT_MAP, chunk)
    c.execute("DROP TABLE fm_v1")
