"""The analytics engine on Apache Spark, for deployments beyond one machine: the tables of
``tables.py`` as directories of Parquet files under ``settings.path``, the rules compiled by
``rules_sql.py`` in Spark's dialect (``spark_sql.py``), memberships diffed by anti-join, exact
overlap. Local mode (``local[2]``) by default; ``settings.master`` names a cluster.

Appends write new Parquet files from the driver (each written aside, then renamed into its
table). A table is rewritten (``replace``, ``clear``, a committed diff) by Spark into a new
directory swapped in by renames; a swap cut short is finished or undone when the engine next
opens. One caller at a time.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from functools import reduce
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cookiematch.dmp.analytics.columns import COLUMNS, profiles_of, table_columns
from cookiematch.dmp.analytics.engine import (
    CHANGES,
    JOIN,
    LEAVE,
    MATCHED,
    REFRESH,
    MembershipDiff,
)
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
    Delivered,
    ExportCounts,
    ExportRow,
    ExportTarget,
)
from cookiematch.dmp.analytics.export_sql import SPARK as EXPORT_SQL
from cookiematch.dmp.analytics.rows import ProfileRows
from cookiematch.dmp.analytics.rules_sql import compile_rule
from cookiematch.dmp.analytics.settings import LOCAL_THREADS, AnalyticsSettings
from cookiematch.dmp.analytics.spark_sql import (
    LIVE_AT,
    SCHEMAS,
    SPARK,
    arguments,
    ddl,
    integer_of,
    ordered_integer,
    plain_double,
)
from cookiematch.dmp.analytics.staged import merge_in_python
from cookiematch.dmp.analytics.tables import (
    ATTRIBUTES,
    EXPORTED,
    LIVE_PROFILES,
    MEMBERSHIPS,
    PROFILE_TABLES,
    PROFILES,
)
from cookiematch.dmp.overlap import (
    LG_K,
    POPULATION,
    Estimate,
    PairOverlap,
    SketchAudiences,
    segment_audience,
)
from cookiematch.dmp.segments.membership import Change
from cookiematch.dmp.segments.model import Segment
from cookiematch.dmp.segments.rules import Rule
from cookiematch.dmp.traits.schema import TraitCatalog

CHECKPOINT_FILE = "checkpoints.json"
"""When each named step last ran (``checkpoint``), beside the tables."""

_ON = "a.profile = b.profile AND a.segment = b.segment"
_STORED = (*PROFILE_TABLES, EXPORTED)  # every table kept in Parquet


def spark_session(settings: AnalyticsSettings) -> SparkSession:
    """A Spark session for ``settings`` (the process's running one, if any: Spark keeps one
    context per process)."""
    master = settings.spark_master
    builder = (
        SparkSession.builder.master(master)
        .appName("cookiematch-dmp")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", f"{int(settings.memory_limit_mb)}m")
        .config("spark.sql.session.timeZone", "UTC")
    )
    spill = settings.spill_directory
    if spill is not None:
        Path(spill).mkdir(parents=True, exist_ok=True)
        builder = builder.config("spark.local.dir", spill)
    if master.startswith("local"):  # a shuffle partition per task thread, not 200
        partitions = settings.threads or LOCAL_THREADS
        builder = builder.config("spark.sql.shuffle.partitions", str(partitions))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _arrow(table: str, columns: list[list[Any]]) -> pa.Table:
    """A table's rows as Arrow, in Spark's encodings (``spark_sql.py``)."""
    if table == ATTRIBUTES:
        names = COLUMNS[ATTRIBUTES]
        at_int, at_float = names.index("num_int"), names.index("num_float")
        columns = list(columns)
        columns[at_int] = [None if v is None else ordered_integer(v) for v in columns[at_int]]
        columns[at_float] = [plain_double(v) for v in columns[at_float]]
    schema = SCHEMAS[table]
    return pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema
    )


class SparkEngine:
    """``AnalyticsEngine`` on Spark over Parquet tables in ``settings.path``, in a session of
    its own (its temporary views) on ``session``'s context (None: the process's, started from
    ``settings`` if none runs). Spark keeps one context per process: ``close`` leaves it
    running, the process's end stops it."""

    def __init__(
        self,
        settings: AnalyticsSettings,
        *,
        max_events_per_name: int = 50,
        session: SparkSession | None = None,
    ) -> None:
        self._root = Path(settings.path)
        self._base = spark_session(settings) if session is None else session
        self._spark = self._base.newSession()  # temporary views of its own
        self._max_events = max_events_per_name
        self._version = 0  # bumped by every write
        self._registered: int | None = None
        self._live: tuple[float, int] | None = None  # (now, version) of the live relations
        self._cached: list[DataFrame] = []
        self._pending_at: float | None = None
        self._diff: list[DataFrame] = []
        self._delta: list[DataFrame] = []  # the pending export delta's relations
        for table in _STORED:
            self._recover(table)

    @property
    def session(self) -> SparkSession:
        return self._spark

    def close(self) -> None:
        self._drop(self._delta)
        self._drop(self._diff)
        self._drop(self._cached)

    # --- files ----------------------------------------------------------------------------

    def _dir(self, table: str) -> Path:
        return self._root / table

    def _recover(self, table: str) -> None:
        """Finish or undo a swap (``_rewrite``) cut short; make the table's directory."""
        target, staged, old = self._swap_dirs(table)
        if not target.exists():
            if (staged / "_SUCCESS").exists():
                staged.rename(target)
            elif old.exists():
                old.rename(target)
        shutil.rmtree(staged, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        target.mkdir(parents=True, exist_ok=True)

    def _swap_dirs(self, table: str) -> tuple[Path, Path, Path]:
        return self._dir(table), self._root / f".{table}.next", self._root / f".{table}.old"

    def _write(self, table: str, rows: pa.Table) -> None:
        name = f"part-{uuid.uuid4().hex}.parquet"
        aside = self._dir(table) / f".{name}"  # Spark reads no file named with a leading dot
        pq.write_table(rows, aside)
        aside.rename(self._dir(table) / name)

    def _rewrite(self, table: str, rows: DataFrame) -> None:
        """Make ``rows`` (read from anything, the table itself too) the table's contents."""
        target, staged, old = self._swap_dirs(table)
        shutil.rmtree(staged, ignore_errors=True)
        rows.write.mode("overwrite").parquet(str(staged))
        target.rename(old)
        staged.rename(target)
        shutil.rmtree(old)
        self._version += 1

    def _read(self, table: str) -> DataFrame:
        return self._spark.read.schema(ddl(SCHEMAS[table])).parquet(str(self._dir(table)))

    def _register(self) -> None:
        """The stored tables as temporary views, over the files they hold now."""
        if self._registered == self._version:
            return
        for table in _STORED:
            self._read(table).createOrReplaceTempView(table)
        self._registered = self._version

    @staticmethod
    def _drop(frames: list[DataFrame]) -> None:
        for frame in frames:
            frame.unpersist()
        frames.clear()

    # --- profiles -------------------------------------------------------------------------

    def clear(self) -> None:
        for table in PROFILE_TABLES:
            shutil.rmtree(self._dir(table))
            self._dir(table).mkdir(parents=True)
        self._version += 1

    def append(self, profiles: Sequence[ProfileRows]) -> None:
        if not profiles:
            return
        for table, columns in table_columns(profiles).items():
            if columns[0]:
                self._write(table, _arrow(table, columns))
        self._version += 1

    def replace(self, profiles: Sequence[ProfileRows]) -> None:
        self.remove([p.dmp_uid for p in profiles])
        self.append(profiles)

    def merge_staged(self, files: Sequence[bytes], catalog: TraitCatalog) -> None:
        """Merged in Python (``staged.merge_in_python``), the profiles replaced."""
        merge_in_python(self, files, catalog)

    def remove(self, dmp_uids: Sequence[str]) -> None:
        if not dmp_uids:
            return
        ids = self._spark.createDataFrame([(uid,) for uid in dmp_uids], "id STRING")
        self._register()
        for table in PROFILE_TABLES:
            column = "id" if table == PROFILES else "profile"
            held = self._spark.table(table)
            self._rewrite(table, held.join(ids, held[column] == ids["id"], "left_anti"))
            self._register()

    def profiles(self, dmp_uids: Sequence[str]) -> list[ProfileRows]:
        ids = sorted(set(dmp_uids))
        if not ids:
            return []
        rows: dict[str, list[Sequence[Any]]] = {}
        for table in PROFILE_TABLES:
            column = "id" if table == PROFILES else "profile"
            held = self._read(table)
            found: list[Sequence[Any]] = [
                tuple(row) for row in held.where(held[column].isin(ids)).collect()
            ]
            if table == ATTRIBUTES:
                at = COLUMNS[ATTRIBUTES].index("num_int")
                found = [
                    (*r[:at], None if r[at] is None else integer_of(r[at]), *r[at + 1 :])
                    for r in found
                ]
            rows[table] = found
        return profiles_of(rows)

    def checkpoint(self, name: str) -> float | None:
        done = self._checkpoints().get(name)
        return None if done is None else float(done)

    def set_checkpoint(self, name: str, at: float) -> None:
        """Kept in a small JSON file beside the tables, replaced whole by a rename."""
        held = self._checkpoints()
        held[name] = at
        path = self._root / CHECKPOINT_FILE
        aside = path.with_name(f".{CHECKPOINT_FILE}.{uuid.uuid4().hex}")
        aside.write_bytes(json.dumps(held).encode())
        os.replace(aside, path)

    def _checkpoints(self) -> dict[str, float]:
        path = self._root / CHECKPOINT_FILE
        if not path.exists():
            return {}
        held: dict[str, float] = json.loads(path.read_bytes())
        return held

    def profile_count(self) -> int:
        return self._read(PROFILES).count()

    def profile_ids(self) -> list[str]:
        return [str(row[0]) for row in self._read(PROFILES).select("id").collect()]

    # --- rules ----------------------------------------------------------------------------

    def _live_at(self, now: float) -> None:
        """The live relations (``spark_sql.LIVE_AT``) for ``now``, cached as they are read."""
        if self._live == (now, self._version):
            return
        self._drop(self._cached)
        self._register()
        for name, sql in LIVE_AT.items():
            params: dict[str, object] = {"now": now}
            if ":max_events" in sql:
                params["max_events"] = self._max_events
            frame = self._spark.sql(sql, args=params).cache()
            frame.createOrReplaceTempView(name)
            self._cached.append(frame)
        self._live = (now, self._version)

    def _members(self, rule: Rule, now: float) -> DataFrame:
        query = compile_rule(rule, now, SPARK)
        return self._spark.sql(query.sql, args=arguments(query.params))

    def matching(self, rule: Rule, now: float) -> set[str]:
        self._live_at(now)
        return {row[0] for row in self._members(rule, now).collect()}

    # --- memberships ----------------------------------------------------------------------

    def diff_memberships(
        self, segments: Sequence[Segment], now: float, refresh_before: float
    ) -> MembershipDiff:
        self._live_at(now)
        self._drop(self._diff)
        spark = self._spark
        found = [
            self._members(s.rule, now).select(F.lit(s.id).alias("segment"), F.col("id"))
            for s in segments
        ]
        empty = spark.createDataFrame([], "segment STRING, id STRING")
        matched = reduce(DataFrame.unionAll, found, empty).withColumnRenamed("id", "profile")
        matched = matched.cache()
        matched.createOrReplaceTempView(MATCHED)
        changes = spark.sql(
            f"""SELECT b.profile, b.segment, '{JOIN}' AS change, CAST(NULL AS DOUBLE) AS joined_at
              FROM {MATCHED} b LEFT ANTI JOIN {MEMBERSHIPS} a ON {_ON}
            UNION ALL
            SELECT a.profile, a.segment, '{LEAVE}', a.joined_at
              FROM {MEMBERSHIPS} a LEFT ANTI JOIN {MATCHED} b ON {_ON}
            UNION ALL
            SELECT a.profile, a.segment, '{REFRESH}', a.joined_at
              FROM {MEMBERSHIPS} a LEFT SEMI JOIN {MATCHED} b ON {_ON}
             WHERE a.written_at IS NULL OR a.written_at < :refresh_before""",
            args={"refresh_before": refresh_before},
        ).cache()
        changes.createOrReplaceTempView(CHANGES)
        self._diff += [matched, changes]
        self._pending_at = now
        counts = {r[0]: int(r[1]) for r in changes.groupBy("change").count().collect()}
        sizes = {s.id: 0 for s in segments}
        sizes.update({r[0]: int(r[1]) for r in matched.groupBy("segment").count().collect()})
        return MembershipDiff(
            at=now,
            profiles=spark.table(LIVE_PROFILES).count(),
            joined=counts.get(JOIN, 0),
            left=counts.get(LEAVE, 0),
            refreshed=counts.get(REFRESH, 0),
            sizes=sizes,
        )

    def changes(self, batch: int) -> Iterator[list[Change]]:
        now = self._pending()
        rows = self._spark.sql(
            f"""SELECT profile,
                   array_sort(collect_list(CASE WHEN change = '{JOIN}' THEN segment END)),
                   array_sort(collect_list(CASE WHEN change = '{LEAVE}' THEN segment END)),
                   collect_list(CASE WHEN change = '{REFRESH}'
                                THEN named_struct('segment', segment, 'at', joined_at) END)
              FROM {CHANGES} GROUP BY profile ORDER BY profile"""
        ).toLocalIterator()
        while chunk := list(itertools.islice(rows, batch)):
            yield [
                Change(
                    uid,
                    {s: now for s in joined},
                    tuple(left),
                    {r["segment"]: r["at"] for r in refreshed},
                )
                for uid, joined, left, refreshed in chunk
            ]

    def commit_memberships(self, now: float) -> None:
        self._pending()
        spark = self._spark
        kept = spark.sql(
            f"""SELECT a.profile, a.segment, a.joined_at, a.written_at FROM {MEMBERSHIPS} a
             LEFT ANTI JOIN (SELECT profile, segment FROM {CHANGES}
                              WHERE change IN ('{LEAVE}', '{REFRESH}')) b ON {_ON}"""
        )
        written = spark.sql(
            f"""SELECT profile, segment, coalesce(joined_at, :now) AS joined_at,
                       CAST(:now AS DOUBLE) AS written_at
              FROM {CHANGES} WHERE change IN ('{JOIN}', '{REFRESH}')""",
            args={"now": now},
        )
        self._rewrite(MEMBERSHIPS, kept.unionAll(written))
        self._drop(self._diff)
        self._pending_at = None

    def _pending(self) -> float:
        if self._pending_at is None:
            raise RuntimeError("no pending membership diff: call diff_memberships first")
        return self._pending_at

    # --- overlap --------------------------------------------------------------------------

    def overlap(self, segments: Sequence[str], now: float) -> list[PairOverlap]:
        names = sorted(set(segments))
        if len(names) < 2:
            return []
        self._register()
        spark = self._spark
        chosen = spark.createDataFrame([(n,) for n in names], "segment STRING")
        held = spark.table(MEMBERSHIPS).join(chosen, "segment", "left_semi")
        held = held.select("segment", "profile").cache()
        try:
            sizes = {r[0]: int(r[1]) for r in held.groupBy("segment").count().collect()}
            a, b = held.alias("a"), held.alias("b")
            pairs = (
                a.join(b, (F.col("a.profile") == F.col("b.profile")))
                .where(F.col("a.segment") < F.col("b.segment"))
                .groupBy(F.col("a.segment"), F.col("b.segment"))
                .count()
                .collect()
            )
        finally:
            held.unpersist()
        both = {(r[0], r[1]): int(r[2]) for r in pairs}
        live = spark.sql(
            f"SELECT count(*) FROM {PROFILES} WHERE expires_at IS NULL OR expires_at > :now",
            args={"now": now},
        ).collect()[0][0]
        population = Estimate.exact(int(live))
        found = []
        for x, y in itertools.combinations(names, 2):
            size_x, size_y, common = sizes.get(x, 0), sizes.get(y, 0), both.get((x, y), 0)
            found.append(
                PairOverlap(
                    x,
                    y,
                    Estimate.exact(size_x),
                    Estimate.exact(size_y),
                    Estimate.exact(common),
                    Estimate.exact(size_x + size_y - common),
                    population,
                )
            )
        return found

    def sketches(self, segments: Sequence[str], now: float, lg_k: int = LG_K) -> SketchAudiences:
        """Theta sketches, built by Spark (``theta_sketch_agg``, DataSketches' own format and
        hash), of the memberships held of ``segments`` and of the profiles live at ``now``, read
        by the project's DataSketches code (``dmp/overlap.py``): figures with their bounds at
        any size, mergeable across runs and machines."""
        self._register()
        spark = self._spark
        aggregate = F.expr(f"theta_sketch_agg(profile, {int(lg_k)})")
        chosen = spark.createDataFrame([(n,) for n in sorted(set(segments))], "segment STRING")
        held = spark.table(MEMBERSHIPS).join(chosen, "segment", "left_semi")
        found = {
            segment_audience(r[0]): bytes(r[1])
            for r in held.groupBy("segment").agg(aggregate).collect()
        }
        live = spark.sql(
            f"SELECT theta_sketch_agg(id, {int(lg_k)}) FROM {PROFILES} "
            "WHERE expires_at IS NULL OR expires_at > :now",
            args={"now": now},
        ).collect()[0][0]
        found[POPULATION] = bytes(live)
        return SketchAudiences.from_serialized(found, lg_k)

    # --- exports --------------------------------------------------------------------------

    def _sql(self, template: str, params: dict[str, object]) -> DataFrame:
        sql, bound = EXPORT_SQL.bind(template, params)
        return self._spark.sql(sql, args=bound)

    def export_delta(self, target: ExportTarget, erased: Sequence[str]) -> ExportCounts:
        self._drop(self._delta)
        self._register()
        params = target.params()
        gone = self._spark.createDataFrame([(i,) for i in sorted(set(erased))], "id STRING")
        gone.createOrReplaceTempView(EXPORT_ERASED)
        current = self._sql(CURRENT, params).cache()
        current.createOrReplaceTempView(EXPORT_CURRENT)
        delta = self._sql(DELTA, params).cache()
        delta.createOrReplaceTempView(EXPORT_DELTA)
        self._delta += [current, delta]
        members, no_consent, unmatched, unchanged = self._sql(COUNTS, params).collect()[0]
        actions = {r[0]: int(r[1]) for r in self._spark.sql(ACTIONS).collect()}
        return ExportCounts(int(members), int(no_consent), int(unmatched), int(unchanged), actions)

    def export_rows(self, batch: int) -> Iterator[list[ExportRow]]:
        rows = self._spark.sql(EXPORT_SQL.rows()).toLocalIterator()
        while chunk := list(itertools.islice(rows, batch)):
            yield [(r[0], r[1], r[2]) for r in chunk]

    def write_export(self, path: str, csv: bool) -> None:
        """Written by Spark as one text file (one partition, each line built in SQL), moved to
        ``path``."""
        target = Path(path)
        staged = target.with_name(f".{target.name}.spark")
        shutil.rmtree(staged, ignore_errors=True)
        lines = self._sql(EXPORT_SQL.lines(csv), dict(LINE_PARAMS))
        (
            lines.coalesce(1)
            .sortWithinPartitions("rank", "id")
            .select("line")
            .write.option("lineSep", "\r\n" if csv else "\n")
            .text(str(staged))
        )
        parts = sorted(staged.glob("part-*"))
        if parts:
            os.replace(parts[0], target)
        else:  # an empty delta: Spark wrote no part
            target.write_bytes(b"")
        shutil.rmtree(staged, ignore_errors=True)

    def commit_export(
        self, destination: str, segment: str, delivered: Delivered, at: float
    ) -> None:
        added, kept = delivered.added, delivered.kept
        changed = [uid for uid, _ in added] + delivered.dropped
        if not changed and not kept and not delivered.erased:
            return
        self._register()
        spark = self._spark
        held = spark.table(EXPORTED)
        this = (F.col("destination") == destination) & (F.col("segment") == segment)
        ours, others = held.where(this), held.where(~this)
        if changed:
            gone = spark.createDataFrame([(uid,) for uid in changed], "profile STRING")
            ours = ours.join(gone, "profile", "left_anti")
        if delivered.erased:
            ids = spark.createDataFrame([(i,) for i in delivered.erased], "sent_id STRING")
            ours = ours.join(ids, "sent_id", "left_anti")
        if kept:
            fresh = spark.createDataFrame(
                [(uid, True) for uid in kept], "profile STRING, fresh BOOLEAN"
            )
            ours = ours.join(fresh, "profile", "left").withColumn(
                "sent_at", F.when(F.col("fresh"), F.lit(at)).otherwise(F.col("sent_at"))
            )
        columns = [f.name for f in SCHEMAS[EXPORTED]]
        times = delivered.added_at or [at] * len(added)
        rows = [
            (destination, segment, uid, id_, float(when))
            for (uid, id_), when in zip(added, times, strict=True)
        ]
        new = spark.createDataFrame(rows, ddl(SCHEMAS[EXPORTED]))
        self._rewrite(EXPORTED, others.select(columns).unionAll(ours.select(columns)).unionAll(new))

    def exported(self, destination: str, segment: str) -> dict[str, str]:
        self._register()
        found = self._sql(SENT, {"destination": destination, "segment": segment}).collect()
        return {r[0]: r[1] for r in found}
