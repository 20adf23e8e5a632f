"""Which analytics engine runs the batch half, where it keeps its data, and how much memory it
may take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MEMORY_LIMIT_MB = 1024
"""The engine's memory limit when none is configured; past it, it spills to ``temp_directory``."""

Engine = Literal["duckdb", "spark"]
ENGINES: tuple[Engine, ...] = ("duckdb", "spark")

LOCAL_THREADS = 2
"""Spark's local mode runs this many task threads when neither a master nor threads is set."""


@dataclass(frozen=True, slots=True)
class AnalyticsSettings:
    """``engine``: DuckDB embedded (``duckdb_engine.py``) or Apache Spark (``spark_engine.py``).

    ``path``: DuckDB's database file (``:memory:``: none, only where it owns no traits),
    Spark's directory of Parquet tables; ``temp_directory``: where the engine spills (None:
    beside it, ``<path>.tmp``);
    ``threads``: DuckDB's threads (None: one per core), Spark's local-mode task threads (None:
    ``LOCAL_THREADS``); ``master``: Spark's master URL (None: ``local[<threads>]``; a cluster's
    executors must then read and write ``path`` under the same name); ``memory_limit_mb``:
    DuckDB's memory limit, Spark's driver memory."""

    path: str
    memory_limit_mb: int = MEMORY_LIMIT_MB
    temp_directory: str | None = None
    threads: int | None = None
    engine: Engine = "duckdb"
    master: str | None = None

    @property
    def spill_directory(self) -> str | None:
        if self.temp_directory is not None:
            return self.temp_directory
        return None if self.path == ":memory:" else f"{self.path}.tmp"

    @property
    def staging_directory(self) -> str:
        """Where the online writers stage trait updates for the engine
        (``dmp/traits/staging.py``): beside it, ``<path>.staging``. A database in memory has
        none: the engine that owns the traits keeps them in a file (the configuration refuses
        ``:memory:``)."""
        if self.path == ":memory:":
            raise ValueError("an engine in memory cannot own the profiles' traits")
        return f"{self.path}.staging"

    @property
    def spark_master(self) -> str:
        if self.master is not None:
            return self.master
        return f"local[{self.threads or LOCAL_THREADS}]"
