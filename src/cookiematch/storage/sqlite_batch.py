"""How the SQLite store's worker threads run a batch of queued ops on their connection.

A batch is whatever was queued when a thread woke up (``drain``). Reads share one read
transaction (one snapshot). Writes share one transaction, and the plain-key writes and the
field-map writes of a batch are each merged into one multi-row operation: few
``sqlite3_step`` calls, hence few GIL hand-overs (see ``sqlite_ops.ROWS_PER_STATEMENT``).
Results come back in the order of the ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
from collections.abc import Callable
from typing import Any

from cookiematch.errors import StorageError
from cookiematch.storage import packed
from cookiematch.storage import sqlite_ops as ops
from cookiematch.storage.packed import Fields

Op = Callable[..., Any]
# (op, args, future or None when nobody waits, sequence number); None stops the thread.
Queued = tuple[Op, tuple[Any, ...], asyncio.Future[Any] | None, int]
Item = Queued | None
Result = tuple[asyncio.Future[Any], bool, Any]  # (future, ok, value or StorageError)
Outcome = tuple[bool, Any]  # (ok, value or StorageError) of one write

MAX_BATCH = 10_000  # ops per transaction (writer) or per wake-up (readers)

_ONE_QUERY_READS = frozenset({ops.get, ops.hget, ops.hgetall})
_CHUNKED_READS = frozenset({ops.get_many, ops.hgetall_many})


def drain(q: queue.SimpleQueue[Item], first: Item) -> tuple[list[Queued], bool]:
    """``first`` plus whatever is queued, up to the stop marker (returns: batch, stop)."""
    if first is None:
        return [], True
    batch = [first]
    return batch, top_up(q, batch)


def top_up(q: queue.SimpleQueue[Item], batch: list[Queued]) -> bool:
    """Add to ``batch`` whatever is queued, up to ``MAX_BATCH`` items or the stop marker
    (returns: whether it was met)."""
    while len(batch) < MAX_BATCH:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return False
        if item is None:
            return True
        batch.append(item)
    return False


def wrap(exc: BaseException) -> StorageError:
    """``exc`` as a StorageError (itself if it is one), the original as ``__cause__``."""
    if isinstance(exc, StorageError):
        return exc
    err = StorageError(f"sqlite: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


# --- reads -----------------------------------------------------------------------------------


def _one_query(batch: list[Queued]) -> bool:
    """A batch that is a single read of one query: its own snapshot, no BEGIN/COMMIT (two
    fewer GIL hand-overs, see ``sqlite_ops.ROWS_PER_STATEMENT``)."""
    if len(batch) != 1:
        return False
    op, args = batch[0][0], batch[0][1]
    return op in _ONE_QUERY_READS or (op in _CHUNKED_READS and len(args[0]) <= ops.IN_CHUNK)


def run_reads(conn: sqlite3.Connection, batch: list[Queued]) -> list[Result]:
    """Run a batch of reads in one read transaction: one snapshot, one WAL read lock. The
    point reads (``get``, ``get_many``, ``hget``, ``hgetall``) of the batch share one query per
    table (per ``IN`` chunk), each judged at its own time; if that fails, each read runs alone
    (a bad one fails alone)."""
    if not _one_query(batch):
        with contextlib.suppress(sqlite3.Error):  # without it, each read takes its own snapshot
            conn.execute("BEGIN")
    outcomes: dict[int, Outcome] = {}
    if len(batch) > 1:
        with contextlib.suppress(Exception):
            outcomes = _point_reads(conn, batch)
    results: list[Result] = []
    for i, (op, args, fut, _) in enumerate(batch):
        assert fut is not None  # every read is awaited
        outcome = outcomes.get(i)
        if outcome is None:
            try:
                outcome = (True, op(conn, *args))
            except Exception as exc:
                outcome = (False, wrap(exc))
        results.append((fut, *outcome))
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("COMMIT")
    return results


def _point_reads(conn: sqlite3.Connection, batch: list[Queued]) -> dict[int, Outcome]:
    """The outcomes of the batch's point reads, by position, from one query per table."""
    plain: set[str] = set()
    maps: set[str] = set()
    for op, args, _, _ in batch:
        if op is ops.get:
            plain.add(args[0])
        elif op is ops.get_many:
            plain.update(args[0])
        elif op is ops.hget or op is ops.hgetall:
            maps.add(args[0])
    if len(plain) + len(maps) < 2:
        return {}
    values = ops.kv_rows(conn, sorted(plain)) if plain else {}
    stored = ops.map_rows(conn, sorted(maps)) if maps else {}
    out: dict[int, Outcome] = {}
    for i, (op, args, _, _) in enumerate(batch):
        if op is ops.get:
            out[i] = (True, ops.value_of(values.get(args[0]), args[1]))
        elif op is ops.get_many:
            now = args[1]
            out[i] = (True, [ops.value_of(values.get(key), now) for key in args[0]])
        elif op is ops.hget:
            out[i] = (True, ops.field_of(stored.get(args[0]), args[1], args[2]))
        elif op is ops.hgetall:
            row = stored.get(args[0])
            out[i] = (True, {} if row is None else packed.live_values(row[0], row[1], args[1]))
    return out


# --- writes ----------------------------------------------------------------------------------


def plain_rows(batch: list[Queued]) -> list[ops.Row] | None:
    """The rows of a batch made only of plain-key writes (``put``, ``write_many`` without
    deletes) that fit one statement; None for any other batch."""
    rows: list[ops.Row] = []
    for op, args, _, _ in batch:
        if op is ops.put:
            rows.append(args)
        elif op is ops.write_many and all(row[1] is not None for row in args[0]):
            rows += args[0]
        else:
            return None
        if len(rows) > ops.ROWS_PER_STATEMENT:
            return None
    return rows


def run_writes(c: sqlite3.Connection, batch: list[Queued]) -> list[Outcome]:
    """Run a batch of writes, one statement per kind: between two other ops, every plain-key
    write (``put``, ``write_many`` and ``swap_many`` without deletes) goes into one
    ``put_many`` and every field map write (``hset``, ``hset_many``) into one ``hset_many``
    (``write_together`` without deletes feeds both) (later wins, per field), each in
    the order queued. The two kinds write different tables (``kv``, ``fm``), so running one
    before the other gives what the queued order gives; any other op (a delete, a
    conditional write) runs alone, in its place. The keys of the ``swap_many`` among them are
    read in one query before that ``put_many``, and each answers what its keys held after the
    writes queued before it; a ``swap_together`` feeds both like ``write_together`` (its
    ``also`` maps merged as ``hset_many``'s, nothing answered for them) and its answer comes
    from the same maps ``hset_many`` reads to merge; its ``read_after`` maps are
    read by that same query and answered as the writes gathered with it leave them (merged
    in Python as ``hset_many`` merges them: one query a batch, not two)."""
    results: list[Outcome] = []
    rows: list[ops.Row] = []
    updates: ops.Updates = {}
    owned: set[str] = set()  # the keys of ``updates`` whose maps are the batch's own
    swaps: list[tuple[int, int, int, float]] = []  # (result index, rows from, rows to, now)
    map_swaps: list[_MapSwap] = []
    togethers: list[tuple[int, tuple[str, ...], float]] = []  # (result index, read_after, now)
    now = 0.0  # the latest field-map write's clock: what merging drops as expired

    def flush() -> None:
        nonlocal rows, updates, owned, swaps, map_swaps, togethers
        if swaps:
            _answer_swaps(c, rows, swaps, results)
            swaps = []
        if rows:
            ops.put_many(c, rows)
            rows = []
        stored = None
        if map_swaps or togethers:  # one query: the maps to merge and those read after
            reads = {key for _, keys, _ in togethers for key in keys}
            stored = ops.map_rows(c, sorted(reads.union(updates)))
            if map_swaps:
                _answer_map_swaps(stored, map_swaps, results)
                map_swaps = []
        if togethers:
            assert stored is not None
            _answer_togethers(stored, updates, now, togethers, results)
            togethers = []
        if updates:
            ops.hset_many(c, updates, now, stored)
            updates, owned = {}, set()

    for op, args, _, _ in batch:
        if op is ops.put:
            rows.append(args)
        elif op is ops.hset:
            key, fields, now = args
            _merge_into(updates, owned, key, fields)
        elif op is ops.hset_many:
            more, now = args
            for key, fields in more.items():
                _merge_into(updates, owned, key, fields)
        elif op is ops.write_many and all(row[1] is not None for row in args[0]):
            rows += args[0]
        elif op is ops.swap_many and all(row[1] is not None for row in args[0]):
            swaps.append((len(results), len(rows), len(rows) + len(args[0]), args[1]))
            rows += args[0]
        elif op is ops.write_together and all(row[1] is not None for row in args[0]):
            more_rows, more, now = args
            rows += more_rows
            for key, fields in more.items():
                _merge_into(updates, owned, key, fields)
        elif op is ops.swap_together and all(row[1] is not None for row in args[0]):
            more_rows, more, now, reads, quiet = args
            rows += more_rows
            map_swaps.append(_map_swap(len(results), updates, more, now))
            togethers.append((len(results), reads, now))
            for key, fields in more.items():
                _merge_into(updates, owned, key, fields)
            for key, fields in quiet.items():
                _merge_into(updates, owned, key, fields)
        else:
            flush()
            results.append((True, op(c, *args)))
            continue
        results.append((True, None))
    flush()
    return results


def _answer_swaps(
    c: sqlite3.Connection,
    rows: list[ops.Row],
    swaps: list[tuple[int, int, int, float]],
    results: list[Outcome],
) -> None:
    """Each ``swap_many``'s answer: what its keys held after the rows gathered before it,
    else in the table (one query for every swapped key, before the rows are written)."""
    stored = ops.kv_rows(
        c, sorted({row[0] for _, begin, end, _ in swaps for row in rows[begin:end]})
    )
    latest: dict[str, tuple[bytes, float | None]] = {}
    done = 0
    for index, begin, end, now in swaps:
        for key, value, expires_at in rows[done:begin]:
            latest[key] = (value, expires_at)
        held = []
        for key, _, _ in rows[begin:end]:
            row = latest.get(key)
            held.append(ops.value_of(stored.get(key) if row is None else row, now))
        results[index] = (True, held)
        done = begin


_STORED = object()  # a field's answer comes from the stored map
_MapSwap = tuple[int, float, dict[str, dict[str, Any]]]
"""A ``swap_together`` of a batch: its result's index, its clock, and per key the answer of
each field it writes (what an earlier write of the batch left, or ``_STORED``)."""


def _map_swap(index: int, updates: ops.Updates, more: ops.Updates, now: float) -> _MapSwap:
    """What ``more``'s fields hold after the batch's earlier map writes (``updates``), or
    ``_STORED`` where none wrote them."""
    answers: dict[str, dict[str, Any]] = {}
    for key, fields in more.items():
        pending = updates.get(key, {})
        found = answers[key] = {}
        for name in fields:
            entry = pending.get(name)
            if entry is None:
                found[name] = _STORED
            elif entry[1] is None or entry[1] > now:
                found[name] = entry[0]
    return index, now, answers


def _answer_map_swaps(
    stored: dict[str, ops.MapRow], swaps: list[_MapSwap], results: list[Outcome]
) -> None:
    """Each ``swap_together``'s answer: its fields as the batch's earlier writes left them,
    else as the stored maps hold them (live at its clock). A stored map is decoded once for
    the batch (the change marks' map of the moment is shared by its callbacks)."""
    decoded: dict[str, packed.Fields] = {}
    for index, now, answers in swaps:
        held: dict[str, dict[str, bytes]] = {}
        for key, found in answers.items():
            row = stored.get(key)
            fields = None
            values: dict[str, bytes] = {}
            for name, value in found.items():
                if value is _STORED:
                    if row is None:
                        continue
                    if fields is None:
                        fields = decoded.get(key)
                        if fields is None:
                            fields = decoded[key] = packed.unpack(row[0])
                    entry = fields.get(name)
                    if entry is None or (entry[1] is not None and entry[1] <= now):
                        continue  # absent, or expired at the call's clock
                    value = entry[0]
                values[name] = value
            if values:
                held[key] = values
        results[index] = (True, held)


def _answer_togethers(
    stored: dict[str, ops.MapRow],
    updates: ops.Updates,
    now: float,
    togethers: list[tuple[int, tuple[str, ...], float]],
    results: list[Outcome],
) -> None:
    """Each ``swap_together``'s whole answer: the held values (``_answer_map_swaps``) and its
    ``read_after`` maps as the batch's writes leave them: the ``stored`` maps (read with those
    the writes merge, before them) with ``updates`` merged as ``hset_many`` merges them at
    ``now``, each live at the call's own clock."""
    after_writes: dict[str, packed.Fields] = {}
    for key in {key for _, reads, _ in togethers for key in reads}.intersection(updates):
        row = stored.get(key)
        fields = updates[key]
        after_writes[key] = fields if row is None else packed.merge(row[0], row[1], fields, now)
    for index, reads, at in togethers:
        held = results[index][1] or {}
        after: list[dict[str, bytes]] = []
        for key in reads:
            written = after_writes.get(key)
            if written is not None:
                after.append(
                    {f: v for f, (v, expires) in written.items() if expires is None or expires > at}
                )
            elif (row := stored.get(key)) is not None:
                after.append(packed.live_values(row[0], row[1], at))
            else:
                after.append({})
        results[index] = (True, (held, after))


def _merge_into(updates: ops.Updates, owned: set[str], key: str, fields: Fields) -> None:
    """``fields`` set on ``key`` after the ones already gathered (later wins, per field). The
    first write's fields are kept as given (an op's own argument, left as it is for the ops
    run one by one should the batch fail); a second write copies them into a map of the
    batch's own (``owned``), which the later ones update in place: a key many writes of a batch
    share (the change marks of the moment) costs one copy, not one of everything gathered so
    far per write."""
    merged = updates.get(key)
    if merged is None:
        updates[key] = fields
    elif key in owned:
        merged.update(fields)
    else:
        updates[key] = {**merged, **fields}
        owned.add(key)


def _settle(results: list[Result]) -> None:
    for fut, ok, value in results:
        if not fut.done():  # a cancelled waiter has gone away
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)


def deliver(results: list[Result]) -> None:
    """Settle futures from a worker thread: one loop wake-up per loop per batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Result]] = {}
    for result in results:
        by_loop.setdefault(result[0].get_loop(), []).append(result)
    for loop, batch in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
            loop.call_soon_threadsafe(_settle, batch)
