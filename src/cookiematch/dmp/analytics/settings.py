"""Where the analytics engine keeps its data and how much memory it may take."""

from __future__ import annotations

from dataclasses import dataclass

MEMORY_LIMIT_MB = 1024
"""The engine's memory limit when none is configured; past it, it spills to ``temp_directory``."""


@dataclass(frozen=True, slots=True)
class AnalyticsSettings:
    """``path``: the database file (``:memory:`` for none); ``temp_directory``: where it
    spills (None: beside the file, ``<path>.tmp``); ``threads``: None for one per core."""

    path: str
    memory_limit_mb: int = MEMORY_LIMIT_MB
    temp_directory: str | None = None
    threads: int | None = None

    @property
    def spill_directory(self) -> str | None:
        if self.temp_directory is not None:
            return self.temp_directory
        return None if self.path == ":memory:" else f"{self.path}.tmp"
