"""The analytics engine's interface: what the DMP's batch half asks of it, whatever runs it
(DuckDB embedded, ``duckdb_engine.py``; Apache Spark beyond one machine, ``spark_engine.py``;
chosen by ``engines.open_engine``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from cookiematch.dmp.analytics.export_sql import (
    Delivered,
    ExportCounts,
    ExportRow,
    ExportTarget,
)
from cookiematch.dmp.analytics.rows import ProfileRows
from cookiematch.dmp.overlap import PairOverlap
from cookiematch.dmp.segments.membership import Change
from cookiematch.dmp.segments.model import Segment
from cookiematch.dmp.segments.rules import Rule
from cookiematch.dmp.traits.schema import TraitCatalog

MATCHED = "matched"  # (segment, profile) found by the pending recompute
CHANGES = "membership_changes"  # (profile, segment, change, joined_at) of the pending diff
JOIN, LEAVE, REFRESH = "join", "leave", "refresh"  # the changes of a diff


@dataclass(frozen=True, slots=True)
class MembershipDiff:
    """What a recompute found at ``at``: the live ``profiles``, the memberships to add
    (``joined``), to remove (``left``) and to rewrite with a fresh lifetime (``refreshed``),
    and each segment's size."""

    at: float
    profiles: int
    joined: int
    left: int
    refreshed: int
    sizes: dict[str, int]


class AnalyticsEngine(Protocol):
    def clear(self) -> None:
        """Forget every profile (before a full load)."""

    def append(self, profiles: Sequence[ProfileRows]) -> None:
        """Add profiles the engine does not hold yet."""

    def replace(self, profiles: Sequence[ProfileRows]) -> None:
        """Add profiles, replacing whatever the engine held for the same browsers."""

    def merge_staged(self, files: Sequence[bytes], catalog: TraitCatalog) -> None:
        """Apply staged trait files (their contents, each one that decodes, in staging
        order) in one write (``staged.py``)."""

    def remove(self, dmp_uids: Sequence[str]) -> None:
        """Forget these browsers' profiles (erased, or lapsed in the key-value store)."""

    def profiles(self, dmp_uids: Sequence[str]) -> list[ProfileRows]:
        """What the engine holds of these browsers (those it holds nothing for left out),
        lapsed rows included, in uid order."""

    def checkpoint(self, name: str) -> float | None:
        """The time last recorded under ``name`` (None: never), kept with the profiles."""

    def set_checkpoint(self, name: str, at: float) -> None: ...

    def profile_count(self) -> int:
        """Profiles held, lapsed or not."""

    def profile_ids(self) -> list[str]:
        """The DMP uids of every profile held, lapsed or not."""

    def matching(self, rule: Rule, now: float) -> set[str]:
        """The DMP uids ``rule`` holds for at ``now``."""

    def diff_memberships(
        self, segments: Sequence[Segment], now: float, refresh_before: float
    ) -> MembershipDiff:
        """Evaluate ``segments`` at ``now`` against the memberships held; memberships still
        held that were written before ``refresh_before`` are due for a fresh lifetime. The
        diff stays pending until ``commit_memberships``."""

    def changes(self, batch: int) -> Iterator[list[Change]]:
        """The pending diff as key-value changes, ``batch`` browsers at a time."""

    def commit_memberships(self, now: float) -> None:
        """Hold the pending diff as written (at ``now``)."""

    def overlap(self, segments: Sequence[str], now: float) -> list[PairOverlap]:
        """Exact overlap of every pair of ``segments`` (sorted) in the memberships held; the
        population is the profiles live at ``now``."""

    def export_delta(self, target: ExportTarget, erased: Sequence[str]) -> ExportCounts:
        """What ``target``'s destination is to be sent of its segment (``export_sql.py``),
        with removes of the ``erased`` destination IDs first; pending until the next delta."""

    def export_rows(self, batch: int) -> Iterator[list[ExportRow]]:
        """The pending delta's rows, ``batch`` at a time, in ``export_sql.RANKS``' order."""

    def write_export(self, path: str, csv: bool) -> None:
        """Write the pending delta to the file ``path`` (CSV ``action,id`` with a header, else
        JSON Lines), as the file sink writes a batch (``exports/sinks.py``)."""

    def commit_export(
        self, destination: str, segment: str, delivered: Delivered, at: float
    ) -> None:
        """Record what the destination answered (at ``at``): only then is it sent."""

    def exported(self, destination: str, segment: str) -> dict[str, str]:
        """What the destination was last sent of the segment: uid -> ID."""

    def close(self) -> None: ...
