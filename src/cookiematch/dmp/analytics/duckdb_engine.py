"""The analytics engine on DuckDB, embedded: one database file, a memory limit, spilling to a
temporary directory past it. One connection, used by one caller at a time."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
from duckdb.sqltypes import BIGINT, VARCHAR

from cookiematch.dmp import keys
from cookiematch.dmp.analytics.columns import COLUMNS, profiles_of, table_columns
from cookiematch.dmp.analytics.engine import CHANGES, JOIN, LEAVE, MATCHED, REFRESH, MembershipDiff
from cookiematch.dmp.analytics.export_sql import (
    ACTIONS,
    COUNTS,
    CURRENT,
    DELTA,
    EXPORT_CURRENT,
    EXPORT_DELTA,
    EXPORT_ERASED,
    LINE_PARAMS,
    SENT,
    SHARD_FUNCTION,
    Delivered,
    ExportCounts,
    ExportRow,
    ExportTarget,
)
from cookiematch.dmp.analytics.export_sql import DUCKDB as EXPORT_SQL
from cookiematch.dmp.analytics.rows import ProfileRows
from cookiematch.dmp.analytics.rules_sql import DUCKDB, compile_rule
from cookiematch.dmp.analytics.settings import AnalyticsSettings
from cookiematch.dmp.analytics.staged_sql import apply_in_sql
from cookiematch.dmp.analytics.tables import (
    ATTRIBUTES,
    CHECKPOINTS,
    CONSENT,
    EVENTS,
    EXPORTED,
    EXPOSURES,
    LIVE_AT,
    LIVE_PROFILES,
    MEMBERSHIPS,
    PROFILE_TABLES,
    PROFILES,
    SCHEMA,
    SYNCS,
)
from cookiematch.dmp.overlap import Estimate, PairOverlap
from cookiematch.dmp.segments.membership import Change
from cookiematch.dmp.segments.model import Segment
from cookiematch.dmp.segments.rules import Rule
from cookiematch.dmp.traits.schema import TraitCatalog

# column -> the list type its values are bound as, and the cast to the column's type
_COLUMNS: dict[str, tuple[tuple[str, str, str], ...]] = {
    PROFILES: (("id", "VARCHAR[]", ""), ("expires_at", "DOUBLE[]", "")),
    ATTRIBUTES: (
        ("profile", "VARCHAR[]", ""),
        ("name", "VARCHAR[]", ""),
        ("kind", "VARCHAR[]", ""),
        ("text", "VARCHAR[]", ""),
        ("num_int", "VARCHAR[]", "::BIGNUM"),
        ("num_float", "DOUBLE[]", ""),
        ("flag", "BOOLEAN[]", ""),
        ("items", "VARCHAR[][]", ""),
        ("set_at", "DOUBLE[]", ""),
        ("expires_at", "DOUBLE[]", ""),
    ),
    EVENTS: (
        ("profile", "VARCHAR[]", ""),
        ("name", "VARCHAR[]", ""),
        ("ts", "DOUBLE[]", ""),
        ("expires_at", "DOUBLE[]", ""),
    ),
    EXPOSURES: (
        ("profile", "VARCHAR[]", ""),
        ("kind", "VARCHAR[]", ""),
        ("campaign", "VARCHAR[]", ""),
        ("site", "VARCHAR[]", ""),
        ("creative", "VARCHAR[]", ""),
        ("count", "VARCHAR[]", "::HUGEINT"),
        ("first_at", "DOUBLE[]", ""),
        ("last_at", "DOUBLE[]", ""),
        ("expires_at", "DOUBLE[]", ""),
    ),
    SYNCS: (
        ("profile", "VARCHAR[]", ""),
        ("partner", "VARCHAR[]", ""),
        ("partner_uid", "VARCHAR[]", ""),
        ("synced_at", "DOUBLE[]", ""),
        ("expires_at", "DOUBLE[]", ""),
    ),
    CONSENT: (
        ("profile", "VARCHAR[]", ""),
        ("party", "VARCHAR[]", ""),
        ("decided_at", "DOUBLE[]", ""),
        ("tc_last_updated", "DOUBLE[]", ""),
        ("refused", "BOOLEAN[]", ""),
        ("expires_at", "DOUBLE[]", ""),
    ),
    MEMBERSHIPS: (
        ("profile", "VARCHAR[]", ""),
        ("segment", "VARCHAR[]", ""),
        ("joined_at", "DOUBLE[]", ""),
        ("written_at", "DOUBLE[]", ""),
    ),
}


def _insert_sql(table: str) -> str:
    columns = _COLUMNS[table]
    selected = ", ".join(
        f"unnest(${i + 1}::{list_type}){cast}" for i, (_, list_type, cast) in enumerate(columns)
    )
    return f"INSERT INTO {table} ({', '.join(c for c, _, _ in columns)}) SELECT {selected}"


_INSERTS = {table: _insert_sql(table) for table in _COLUMNS}


def _columns(profiles: Sequence[ProfileRows]) -> dict[str, list[list[Any]]]:
    """Each table's rows of ``profiles``, exact integers as their decimal text."""
    found = table_columns(profiles)
    for table, column in ((ATTRIBUTES, "num_int"), (EXPOSURES, "count")):
        index = COLUMNS[table].index(column)
        found[table][index] = [None if v is None else str(v) for v in found[table][index]]
    return found


_EXACT = {(ATTRIBUTES, "num_int"), (EXPOSURES, "count")}
"""Integers of any size: read as decimal text (``_exact``)."""


def _exact(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row with its exact integers (``_EXACT``, read as text) as Python integers."""
    if table not in (ATTRIBUTES, EXPOSURES):
        return row
    values = list(row)
    for table_, column in _EXACT:
        if table_ == table:
            index = COLUMNS[table].index(column)
            values[index] = None if values[index] is None else int(values[index])
    return tuple(values)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckDBEngine:
    """``AnalyticsEngine`` on an embedded DuckDB database (``settings.path``)."""

    def __init__(self, settings: AnalyticsSettings, *, max_events_per_name: int = 50) -> None:
        if settings.path != ":memory:":
            Path(settings.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = duckdb.connect(settings.path)
        self._max_events = max_events_per_name
        self._pending_at: float | None = None
        # settings are not values of a query: SET takes no parameters (numbers, quoted paths)
        self._db.execute(f"SET memory_limit = '{int(settings.memory_limit_mb)}MB'")
        spill = settings.spill_directory
        if spill is not None:
            self._db.execute(f"SET temp_directory = {_quoted(spill)}")
        if settings.threads is not None:
            self._db.execute(f"SET threads = {int(settings.threads)}")
        self._db.execute(SCHEMA)
        self._db.create_function(SHARD_FUNCTION, keys.shard_of, [VARCHAR], BIGINT)

    def setting(self, name: str) -> str:
        """A DuckDB setting's current value (``memory_limit``, ``temp_directory``, ...)."""
        row = self._db.execute("SELECT current_setting($1)", [name]).fetchone()
        return "" if row is None else str(row[0])

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The engine's connection, for work done in SQL beside it (``ingest_sql.py``)."""
        return self._db

    def close(self) -> None:
        self._db.close()

    # --- profiles -------------------------------------------------------------------------

    def clear(self) -> None:
        for table in PROFILE_TABLES:
            self._db.execute(f"DELETE FROM {table}")

    def append(self, profiles: Sequence[ProfileRows]) -> None:
        if not profiles:
            return
        self._db.execute("BEGIN")
        try:
            for table, columns in _columns(profiles).items():
                if columns[0]:
                    self._db.execute(_INSERTS[table], columns)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def replace(self, profiles: Sequence[ProfileRows]) -> None:
        self.remove([p.dmp_uid for p in profiles])
        self.append(profiles)

    def merge_staged(self, files: Sequence[bytes], catalog: TraitCatalog) -> None:
        apply_in_sql(self._db, files, catalog)

    def remove(self, dmp_uids: Sequence[str]) -> None:
        ids = list(dmp_uids)
        if not ids:
            return
        self._db.execute("BEGIN")
        try:
            for table in PROFILE_TABLES:
                column = "id" if table == PROFILES else "profile"
                self._db.execute(
                    f"DELETE FROM {table} WHERE {column} IN (SELECT unnest($1::VARCHAR[]))", [ids]
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def profiles(self, dmp_uids: Sequence[str]) -> list[ProfileRows]:
        ids = sorted(set(dmp_uids))
        if not ids:
            return []
        rows: dict[str, list[Sequence[Any]]] = {}
        for table in PROFILE_TABLES:
            column = "id" if table == PROFILES else "profile"
            selected = ", ".join(
                f"{c}::VARCHAR" if (table, c) in _EXACT else c for c in COLUMNS[table]
            )
            found = self._db.execute(
                f"SELECT {selected} FROM {table} WHERE {column} IN (SELECT unnest($1::VARCHAR[]))",
                [ids],
            ).fetchall()
            rows[table] = [_exact(table, row) for row in found]
        return profiles_of(rows)

    def checkpoint(self, name: str) -> float | None:
        row = self._db.execute(
            f"SELECT done_at FROM {CHECKPOINTS} WHERE name = $1", [name]
        ).fetchone()
        return None if row is None else float(row[0])

    def set_checkpoint(self, name: str, at: float) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO {CHECKPOINTS} (name, done_at) VALUES ($1, $2)", [name, at]
        )

    def profile_count(self) -> int:
        return self._count(f"SELECT count(*) FROM {PROFILES}")

    def profile_ids(self) -> list[str]:
        return [str(row[0]) for row in self._db.execute(f"SELECT id FROM {PROFILES}").fetchall()]

    def _count(self, sql: str, params: Sequence[object] = ()) -> int:
        row = self._db.execute(sql, list(params)).fetchone()
        return 0 if row is None else int(row[0])

    # --- rules ----------------------------------------------------------------------------

    def _live_at(self, now: float) -> None:
        """Fill the live relations (``tables.LIVE_AT``) for ``now``."""
        for statement in LIVE_AT:
            params: dict[str, object] = {"now": now}
            if "$max_events" in statement:
                params["max_events"] = self._max_events
            self._db.execute(statement, params)

    def matching(self, rule: Rule, now: float) -> set[str]:
        self._live_at(now)
        query = compile_rule(rule, now, DUCKDB)
        return {row[0] for row in self._db.execute(query.sql, list(query.params)).fetchall()}

    # --- memberships ----------------------------------------------------------------------

    def diff_memberships(
        self, segments: Sequence[Segment], now: float, refresh_before: float
    ) -> MembershipDiff:
        self._live_at(now)
        db = self._db
        db.execute(f"CREATE OR REPLACE TEMP TABLE {MATCHED} (segment VARCHAR, profile VARCHAR)")
        for segment in segments:
            query = compile_rule(segment.rule, now, DUCKDB)
            label = DUCKDB.placeholder(len(query.params))
            db.execute(
                f"INSERT INTO {MATCHED} SELECT {label}, id FROM ({query.sql})",
                [*query.params, segment.id],
            )
        db.execute(
            f"""CREATE OR REPLACE TEMP TABLE {CHANGES} AS
            SELECT m.profile, m.segment, '{JOIN}' AS change, NULL::DOUBLE AS joined_at
              FROM {MATCHED} m ANTI JOIN {MEMBERSHIPS} s USING (profile, segment)
            UNION ALL
            SELECT s.profile, s.segment, '{LEAVE}', s.joined_at
              FROM {MEMBERSHIPS} s ANTI JOIN {MATCHED} m USING (profile, segment)
            UNION ALL
            SELECT s.profile, s.segment, '{REFRESH}', s.joined_at
              FROM {MEMBERSHIPS} s SEMI JOIN {MATCHED} m USING (profile, segment)
             WHERE s.written_at IS NULL OR s.written_at < $1""",
            [refresh_before],
        )
        self._pending_at = now
        counts = dict(db.execute(f"SELECT change, count(*) FROM {CHANGES} GROUP BY 1").fetchall())
        sizes = {s.id: 0 for s in segments}
        sizes.update(db.execute(f"SELECT segment, count(*) FROM {MATCHED} GROUP BY 1").fetchall())
        return MembershipDiff(
            at=now,
            profiles=self._count(f"SELECT count(*) FROM {LIVE_PROFILES}"),
            joined=int(counts.get(JOIN, 0)),
            left=int(counts.get(LEAVE, 0)),
            refreshed=int(counts.get(REFRESH, 0)),
            sizes=sizes,
        )

    def changes(self, batch: int) -> Iterator[list[Change]]:
        now = self._pending()
        # the temporary tables live in this connection: read them here, nothing else meanwhile
        cursor = self._db.execute(
            f"""SELECT profile,
                   list(segment ORDER BY segment) FILTER (WHERE change = '{JOIN}'),
                   list(segment ORDER BY segment) FILTER (WHERE change = '{LEAVE}'),
                   list({{'segment': segment, 'at': joined_at}}) FILTER (WHERE change = '{REFRESH}')
              FROM {CHANGES} GROUP BY profile ORDER BY profile"""
        )
        while rows := cursor.fetchmany(batch):
            yield [
                Change(
                    uid,
                    {s: now for s in joined or ()},
                    tuple(left or ()),
                    {r["segment"]: r["at"] for r in refreshed or ()},
                )
                for uid, joined, left, refreshed in rows
            ]

    def commit_memberships(self, now: float) -> None:
        self._pending()
        db = self._db
        db.execute("BEGIN")
        try:
            db.execute(
                f"""DELETE FROM {MEMBERSHIPS} s USING {CHANGES} c
                 WHERE s.profile = c.profile AND s.segment = c.segment
                   AND c.change IN ('{LEAVE}', '{REFRESH}')"""
            )
            db.execute(
                f"""INSERT INTO {MEMBERSHIPS}
                SELECT profile, segment, coalesce(joined_at, $1), $1 FROM {CHANGES}
                 WHERE change IN ('{JOIN}', '{REFRESH}')""",
                [now],
            )
            db.execute(f"DROP TABLE {CHANGES}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._pending_at = None

    def _pending(self) -> float:
        if self._pending_at is None:
            raise RuntimeError("no pending membership diff: call diff_memberships first")
        return self._pending_at

    # --- overlap --------------------------------------------------------------------------

    def overlap(self, segments: Sequence[str], now: float) -> list[PairOverlap]:
        names = sorted(set(segments))
        db = self._db
        sizes: dict[str, int] = dict(
            db.execute(
                f"""SELECT segment, count(*) FROM {MEMBERSHIPS}
                 WHERE segment IN (SELECT unnest($1::VARCHAR[])) GROUP BY 1""",
                [names],
            ).fetchall()
        )
        both: dict[tuple[str, str], int] = {
            (a, b): n
            for a, b, n in db.execute(
                f"""WITH m AS (SELECT segment, profile FROM {MEMBERSHIPS}
                                WHERE segment IN (SELECT unnest($1::VARCHAR[])))
                SELECT a.segment, b.segment, count(*) FROM m a JOIN m b
                    ON a.profile = b.profile AND a.segment < b.segment
                 GROUP BY 1, 2""",
                [names],
            ).fetchall()
        }
        population = Estimate.exact(
            self._count(
                f"SELECT count(*) FROM {PROFILES} WHERE expires_at IS NULL OR expires_at > $1",
                [now],
            )
        )
        found = []
        for a, b in itertools.combinations(names, 2):
            size_a, size_b, common = sizes.get(a, 0), sizes.get(b, 0), both.get((a, b), 0)
            found.append(
                PairOverlap(
                    a,
                    b,
                    Estimate.exact(size_a),
                    Estimate.exact(size_b),
                    Estimate.exact(common),
                    Estimate.exact(size_a + size_b - common),
                    population,
                )
            )
        return found

    # --- exports --------------------------------------------------------------------------

    def export_delta(self, target: ExportTarget, erased: Sequence[str]) -> ExportCounts:
        db, params = self._db, target.params()
        db.execute(
            f"CREATE OR REPLACE TEMP TABLE {EXPORT_ERASED} AS SELECT unnest($1::VARCHAR[]) AS id",
            [sorted(set(erased))],
        )
        for name, template in ((EXPORT_CURRENT, CURRENT), (EXPORT_DELTA, DELTA)):
            sql, bound = EXPORT_SQL.bind(template, params)
            db.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}", bound)
        row = db.execute(*EXPORT_SQL.bind(COUNTS, params)).fetchone()
        members, no_consent, unmatched, unchanged = (0, 0, 0, 0) if row is None else row
        actions = {a: int(n) for a, n in db.execute(ACTIONS).fetchall()}
        return ExportCounts(int(members), int(no_consent), int(unmatched), int(unchanged), actions)

    def export_rows(self, batch: int) -> Iterator[list[ExportRow]]:
        # nothing else on the connection while the cursor is read
        cursor = self._db.execute(EXPORT_SQL.rows())
        while rows := cursor.fetchmany(batch):
            yield [(action, profile, id_) for action, profile, id_ in rows]

    def write_export(self, path: str, csv: bool) -> None:
        """``COPY … TO`` the file, each line built in SQL, written as it is (no quoting)."""
        db = self._db
        sql, bound = EXPORT_SQL.bind(EXPORT_SQL.lines(csv), LINE_PARAMS)
        db.execute(f"CREATE OR REPLACE TEMP TABLE export_lines AS {sql}", bound)
        new_line = "\\r\\n" if csv else "\\n"
        db.execute(
            f"""COPY (SELECT line FROM export_lines ORDER BY rank, id) TO {_quoted(path)}
            (FORMAT CSV, HEADER false, QUOTE '', ESCAPE '', NEW_LINE '{new_line}')"""
        )
        db.execute("DROP TABLE export_lines")

    def commit_export(
        self, destination: str, segment: str, delivered: Delivered, at: float
    ) -> None:
        db = self._db
        pair = [destination, segment]
        added, kept = delivered.added, delivered.kept
        ours = f"{EXPORTED} WHERE destination = $1 AND segment = $2"
        db.execute("BEGIN")
        try:
            changed = [uid for uid, _ in added] + delivered.dropped
            if changed:
                db.execute(
                    f"DELETE FROM {ours} AND profile IN (SELECT unnest($3::VARCHAR[]))",
                    [*pair, changed],
                )
            if delivered.erased:
                db.execute(
                    f"DELETE FROM {ours} AND sent_id IN (SELECT unnest($3::VARCHAR[]))",
                    [*pair, delivered.erased],
                )
            if added:
                db.execute(
                    f"""INSERT INTO {EXPORTED} SELECT $1, $2, unnest($3::VARCHAR[]),
                        unnest($4::VARCHAR[]), unnest($5::DOUBLE[])""",
                    [
                        *pair,
                        [uid for uid, _ in added],
                        [id_ for _, id_ in added],
                        delivered.added_at or [at] * len(added),
                    ],
                )
            if kept:
                db.execute(
                    f"""UPDATE {EXPORTED} SET sent_at = $3 WHERE destination = $1
                       AND segment = $2 AND profile IN (SELECT unnest($4::VARCHAR[]))""",
                    [*pair, at, kept],
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def exported(self, destination: str, segment: str) -> dict[str, str]:
        sql, bound = EXPORT_SQL.bind(SENT, {"destination": destination, "segment": segment})
        return dict(self._db.execute(sql, bound).fetchall())
