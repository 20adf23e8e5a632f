"""The SQLite store's operations: each runs on a worker thread with that thread's connection.

An op takes the connection, then its arguments, already checked on the event loop (values are
``bytes``, expiries wall-clock seconds, ``now`` read from the store's clock). Reads run on the
reader threads; writes on the single writer thread, inside its transaction, which makes every
read-modify-write of a field map atomic (``sqlite_engine``). The SQL is in ``sqlite_schema``.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from cookiematch.storage import packed
from cookiematch.storage import sqlite_schema as sql
from cookiematch.storage.packed import Fields

ROWS_PER_STATEMENT = 300
"""Rows per multi-row ``INSERT … VALUES (…), (…)`` (3 parameters each, under SQLite's oldest
limit of 999). Python's sqlite3 releases the GIL around every ``sqlite3_step``: one step per
row (``executemany``) lets a busy event loop take the GIL back after each row, and the writer
then waits up to the interpreter's switch interval (5 ms) for every row. One statement for many
rows is one step: a batch of writes costs a few GIL hand-overs instead of one per row."""
IN_CHUNK = 500  # keys per ``IN (…)`` query
IN_STEP = 16
"""An ``IN (…)`` list is padded (its last key repeated) to a multiple of this many keys: a
connection then prepares a few dozen shapes of each query rather than one per length, which
its statement cache (``sqlite.STATEMENT_CACHE``) keeps; a statement prepared again costs about
0.5 µs a key (a group commit's merge read: 4.4-5.1 µs per DMP callback with the statements
kept, 7.0-8.1 without)."""
PURGE_CHUNK = 1000  # expired rows per table per periodic purge

MapRow = tuple[bytes, float | None]  # a stored map: (packed fields, earliest expiry)
Updates = dict[str, Fields]  # fields to set, by key: field → (value, expires_at)
Row = tuple[str, bytes, float | None]  # a plain value: (key, value, expires_at)

_maps_json = msgspec.json.Decoder(list[tuple[str, str, str | None]])
_values_json = msgspec.json.Decoder(list[tuple[str, str]])


def _live(expires_at: float | None, now: float) -> bool:
    return expires_at is None or expires_at > now


# --- reads -----------------------------------------------------------------------------------


def get(c: sqlite3.Connection, key: str, now: float) -> bytes | None:
    row = c.execute(sql.GET, (key, now)).fetchone()
    return None if row is None else row[0]


def get_entry(c: sqlite3.Connection, key: str, now: float) -> tuple[bytes, float | None] | None:
    """The live value and its expiry time (not its remaining lifetime), or None."""
    row = c.execute(sql.GET_ENTRY, (key, now)).fetchone()
    return None if row is None else (row[0], row[1])


def _padded(keys: list[str]) -> list[str]:
    """``keys`` (not empty) with its last key repeated up to a multiple of ``IN_STEP``."""
    short = -len(keys) % IN_STEP
    return keys + [keys[-1]] * short if short else keys


def get_many(c: sqlite3.Connection, keys: list[str], now: float) -> list[bytes | None]:
    found: dict[str, bytes] = {}
    for i in range(0, len(keys), IN_CHUNK):
        chunk = _padded(keys[i : i + IN_CHUNK])
        query = sql.GET_MANY.format(marks=sql.marks(len(chunk)))
        found.update(c.execute(query, (*chunk, now)).fetchall())
    return [found.get(key) for key in keys]


def get_found(c: sqlite3.Connection, keys: list[str], now: float) -> dict[str, bytes]:
    """The live values among ``keys`` (not empty), by key: each chunk of keys comes back as one
    JSON row (values in hex), one ``sqlite3_step`` instead of one per row, for the reason given
    at ROWS_PER_STATEMENT."""
    found: dict[str, bytes] = {}
    for i in range(0, len(keys), IN_CHUNK):
        chunk = _padded(keys[i : i + IN_CHUNK])
        query = sql.GET_MANY_AS_JSON.format(marks=sql.marks(len(chunk)))
        for key, hexed in _values_json.decode(c.execute(query, (*chunk, now)).fetchone()[0]):
            found[key] = bytes.fromhex(hexed)
    return found


def kv_rows(c: sqlite3.Connection, keys: list[str]) -> dict[str, tuple[bytes, float | None]]:
    """The stored values of ``keys`` with their expiries, expired ones included."""
    found: dict[str, tuple[bytes, float | None]] = {}
    for i in range(0, len(keys), IN_CHUNK):
        chunk = _padded(keys[i : i + IN_CHUNK])
        query = sql.GET_ROWS.format(marks=sql.marks(len(chunk)))
        for key, value, expires_at in c.execute(query, chunk).fetchall():
            found[key] = (value, expires_at)
    return found


def _map_row(c: sqlite3.Connection, key: str) -> MapRow | None:
    row: MapRow | None = c.execute(sql.GET_MAP, (key,)).fetchone()
    return row


def map_rows(c: sqlite3.Connection, keys: list[str]) -> dict[str, MapRow]:
    """The stored maps of ``keys`` (sorted, distinct: the index is walked in order).

    Each chunk of keys comes back as one JSON row (values in hex, expiries printed exactly):
    one ``sqlite3_step`` instead of one per row, for the reason given at ROWS_PER_STATEMENT.
    """
    found: dict[str, MapRow] = {}
    for i in range(0, len(keys), IN_CHUNK):
        chunk = _padded(keys[i : i + IN_CHUNK])
        query = sql.GET_MAPS_AS_JSON.format(marks=sql.marks(len(chunk)))
        for key, hexed, at in _maps_json.decode(c.execute(query, chunk).fetchone()[0]):
            found[key] = (bytes.fromhex(hexed), None if at is None else float(at))
    return found


def hget(c: sqlite3.Connection, key: str, field: str, now: float) -> bytes | None:
    return field_of(_map_row(c, key), field, now)


def field_of(row: MapRow | None, field: str, now: float) -> bytes | None:
    """The value of ``field`` in a stored map if it is live at ``now``."""
    if row is None:
        return None
    entry = packed.unpack(row[0]).get(field)
    return None if entry is None or not _live(entry[1], now) else entry[0]


def value_of(row: tuple[bytes, float | None] | None, now: float) -> bytes | None:
    """A stored plain value if it is live at ``now``."""
    return None if row is None or not _live(row[1], now) else row[0]


def hgetall(c: sqlite3.Connection, key: str, now: float) -> dict[str, bytes]:
    row = _map_row(c, key)
    return {} if row is None else packed.live_values(row[0], row[1], now)


def hgetall_entries(c: sqlite3.Connection, key: str, now: float) -> Fields:
    """The live fields with their expiry times."""
    row = _map_row(c, key)
    return {} if row is None else packed.live_entries(row[0], row[1], now)


def hgetall_many(c: sqlite3.Connection, keys: list[str], now: float) -> list[dict[str, bytes]]:
    rows = map_rows(c, sorted(set(keys)))
    found = {key: packed.live_values(blob, at, now) for key, (blob, at) in rows.items()}
    return [dict(found.get(key, {})) for key in keys]


def scan_page(
    c: sqlite3.Connection, start: str, first: bool, upper: str | None, limit: int, now: float
) -> list[tuple[str, bytes, float | None]]:
    where, args = sql.key_range(start, first, upper)
    return c.execute(sql.SCAN.format(where=where), (*args, now, limit)).fetchall()


def scan_rows(
    c: sqlite3.Connection, start: str, first: bool, upper: str | None, limit: int, now: float
) -> list[tuple[str, bytes]]:
    """A page of live ``(key, value)`` rows in key order, as the query returns them, read
    through the connection's page cache rather than its mmap: a bulk scan reads every page
    of its range once, and each page read through mmap would stay in the process's memory
    (its RSS) while the connection lives."""
    (mapped,) = c.execute(sql.MMAP_SIZE).fetchone()
    c.execute(f"{sql.MMAP_SIZE} = 0")
    try:
        where, args = sql.key_range(start, first, upper)
        return c.execute(sql.SCAN_ROWS.format(where=where), (*args, now, limit)).fetchall()
    finally:
        c.execute(f"{sql.MMAP_SIZE} = {int(mapped)}")


def scan_maps_page(
    c: sqlite3.Connection, start: str, first: bool, upper: str | None, limit: int, now: float
) -> tuple[list[tuple[str, Fields]], str | None]:
    """The next ``limit`` maps in key order with their live fields (maps with none left are
    skipped), and the last key read if there may be more (else None)."""
    where, args = sql.key_range(start, first, upper)
    rows = c.execute(sql.SCAN_MAPS.format(where=where), (*args, limit)).fetchall()
    maps = [(key, packed.live_entries(blob, at, now)) for key, blob, at in rows]
    return [item for item in maps if item[1]], rows[-1][0] if len(rows) == limit else None


def ping(c: sqlite3.Connection) -> None:
    c.execute(sql.PING).fetchone()


# --- writes ----------------------------------------------------------------------------------


def put(c: sqlite3.Connection, key: str, value: bytes, expires_at: float | None) -> None:
    c.execute(sql.PUT, (key, value, expires_at))


def put_many(c: sqlite3.Connection, rows: list[Row]) -> None:
    """Several ``put`` in order (a later row for a key wins), in multi-row statements."""
    _put_rows(c, sql.PUT_HEAD, rows)


def set_if_absent(
    c: sqlite3.Connection, key: str, value: bytes, expires_at: float | None, now: float
) -> bool:
    """One statement: insert, or replace a value expired at ``now``; True if it wrote."""
    return c.execute(sql.SET_IF_ABSENT, (key, value, expires_at, now)).fetchone() is not None


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


def delete(c: sqlite3.Connection, key: str, now: float) -> bool:
    row = c.execute(sql.DELETE, (key,)).fetchone()
    live = row is not None and _live(row[0], now)
    row = c.execute(sql.DELETE_MAP_RETURNING, (key,)).fetchone()
    if row is not None and not live:
        live = _live(row[1], now) or bool(packed.live_entries(row[0], row[1], now))
    return live


def write_many(
    c: sqlite3.Connection, rows: list[tuple[str, bytes | None, float | None]], now: float
) -> None:
    sets: list[Row] = []
    for key, value, expires_at in rows:
        if value is None:
            put_many(c, sets)
            sets = []
            delete(c, key, now)
        else:
            sets.append((key, value, expires_at))
    put_many(c, sets)


def swap_many(
    c: sqlite3.Connection, rows: list[tuple[str, bytes | None, float | None]], now: float
) -> list[bytes | None]:
    """``write_many(rows)``, answering the live value each key held before."""
    found = kv_rows(c, sorted({row[0] for row in rows}))
    held = [value_of(found.get(row[0]), now) for row in rows]
    write_many(c, rows, now)
    return held


def hset(c: sqlite3.Connection, key: str, fields: Fields, now: float) -> None:
    """Read-modify-write of one map (the single writer makes it atomic)."""
    row = _map_row(c, key)
    if row is not None:
        fields = packed.merge(row[0], row[1], fields, now)
    c.execute(sql.PUT_MAP, (key, *packed.pack(fields)))


def hset_many(
    c: sqlite3.Connection, updates: Updates, now: float, stored: dict[str, MapRow] | None = None
) -> None:
    """Merge each key's new fields into its stored map; expired fields are dropped.

    The stored maps are read (unless given: ``stored``, read by the caller) and the merged
    ones written in key order, so the B-tree is walked once instead of at random places;
    multi-row statements write them all.
    """
    _merge_maps(c, updates, now, None, stored)


def hswap_many(c: sqlite3.Connection, updates: Updates, now: float) -> dict[str, dict[str, bytes]]:
    """``hset_many``, answering per key the live values its written fields held before."""
    held: dict[str, dict[str, bytes]] = {}
    _merge_maps(c, updates, now, held)
    return held


def _merge_maps(
    c: sqlite3.Connection,
    updates: Updates,
    now: float,
    held: dict[str, dict[str, bytes]] | None,
    stored: dict[str, MapRow] | None = None,
) -> None:
    """Merge and write the maps of ``updates``; into ``held`` (if given) the live values
    the fields written held before, per key."""
    names = sorted(updates)
    if stored is None:
        stored = map_rows(c, names)
    merge, pack = packed.merge, packed.pack
    rows: list[Row] = []
    for key in names:
        fields = updates[key]
        row = stored.get(key)
        if row is None:
            pass
        elif held is None:
            fields = merge(row[0], row[1], fields, now)
        else:
            old = packed.live_entries(row[0], row[1], now)
            found = {name: old[name][0] for name in fields if name in old}
            if found:
                held[key] = found
            old.update(fields)
            fields = old
        rows.append((key, *pack(fields)))
    _put_rows(c, sql.PUT_MAP_HEAD, rows, sql.PUT_MAP_TAIL)


def write_together(
    c: sqlite3.Connection,
    rows: list[tuple[str, bytes | None, float | None]],
    updates: Updates,
    now: float,
) -> None:
    """``write_many(rows)`` and ``hset_many(updates)``: two tables, so either order."""
    write_many(c, rows, now)
    if updates:
        hset_many(c, updates, now)


def swap_together(
    c: sqlite3.Connection,
    rows: list[tuple[str, bytes | None, float | None]],
    updates: Updates,
    now: float,
    reads: tuple[str, ...] = (),
    quiet: Updates | None = None,
) -> tuple[dict[str, dict[str, bytes]], list[dict[str, bytes]]]:
    """``write_together``, answering per key the live values the fields of ``updates`` held
    before, and the live maps of ``reads`` after the writes (``quiet``: more maps to merge,
    other keys than ``updates``', nothing answered for them)."""
    write_many(c, rows, now)
    held = hswap_many(c, updates, now) if updates else {}
    if quiet:
        hset_many(c, quiet, now)
    return held, live_maps(c, reads, now)


def live_maps(c: sqlite3.Connection, keys: tuple[str, ...], now: float) -> list[dict[str, bytes]]:
    """The live values of each map of ``keys`` (``{}`` for none), in their order."""
    if not keys:
        return []
    stored = map_rows(c, sorted(set(keys)))
    return [
        {} if (row := stored.get(key)) is None else packed.live_values(row[0], row[1], now)
        for key in keys
    ]


def hdel(c: sqlite3.Connection, key: str, fields: list[str], now: float) -> int:
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
        c.execute(sql.DELETE_MAP, (key,))
    elif changed:
        c.execute(sql.PUT_MAP, (key, *packed.pack(stored)))
    return removed


# --- purge -----------------------------------------------------------------------------------


def _purge_maps(c: sqlite3.Connection, now: float, limit: int) -> tuple[int, int]:
    """Rewrite up to ``limit`` maps holding expired fields without them (delete the maps left
    empty); return (fields removed, maps visited)."""
    rows = c.execute(sql.EXPIRED_MAPS, (now, limit)).fetchall()
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
    c.executemany(sql.DELETE_MAP, gone)
    c.executemany(sql.UPDATE_MAP, kept)
    return removed, len(rows)


def purge_some(c: sqlite3.Connection, now: float, limit: int) -> tuple[int, bool]:
    """Up to ``limit`` expired plain keys and maps holding expired fields; return (plain keys
    and fields removed, whether more may be left)."""
    keys = c.execute(sql.PURGE_SOME, (now, limit)).rowcount
    fields, maps = _purge_maps(c, now, limit)
    return keys + fields, keys >= limit or maps >= limit


def purge(c: sqlite3.Connection, now: float) -> int:
    """Every expired plain key and field; return how many."""
    removed = c.execute(sql.PURGE, (now,)).rowcount
    while True:
        fields, maps = _purge_maps(c, now, PURGE_CHUNK)
        removed += fields
        if maps < PURGE_CHUNK:
            return removed
