"""Segments: rules as data (``rules``), pure evaluation over a ``ProfileSnapshot`` (``model``),
memberships in the store (``membership``), incremental and full updates (``updater``)."""

from cookiematch.dmp.segments.membership import Change, Memberships
from cookiematch.dmp.segments.model import Segment, evaluate
from cookiematch.dmp.segments.rules import Rule, parse_rule
from cookiematch.dmp.segments.source import ProfileSource, StoredProfiles
from cookiematch.dmp.segments.updater import RecomputeReport, SegmentUpdater

__all__ = [
    "Change",
    "Memberships",
    "ProfileSource",
    "RecomputeReport",
    "Rule",
    "Segment",
    "SegmentUpdater",
    "StoredProfiles",
    "evaluate",
    "parse_rule",
]
