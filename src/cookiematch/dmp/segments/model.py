"""A segment: an id and a rule; which segments a profile belongs to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cookiematch.dmp.segments.rules import Rule
from cookiematch.dmp.snapshot import ProfileSnapshot


@dataclass(frozen=True, slots=True)
class Segment:
    """``[[dmp.segments]]``: ``id`` (1-64 of ``A-Z a-z 0-9 _ . -``) and its rule."""

    id: str
    rule: Rule
    description: str = ""


def evaluate(segments: Iterable[Segment], profile: ProfileSnapshot, now: float) -> set[str]:
    """The ids of the segments whose rule holds for this profile at ``now``."""
    return {s.id for s in segments if s.rule.matches(profile, now)}
