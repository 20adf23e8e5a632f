"""Export deltas in SQL, for both engines: what a destination is to be sent of a segment, from
the memberships held, the partners' IDs (``syncs``), the consent marks and what it was sent
before (``exported``).

    exported   (destination, segment, profile, sent_id, sent_at)
               the members a destination was last sent, with the ID each was sent under

The current members (``CURRENT``): each membership of the segment not lapsed, its ID for the
destination (the partner's, from the live syncs; the DMP uid when the destination takes DMP
uids; NULL when unmatched) and whether its consent marks allow the destination's vendor (as
``dmp.consent.allows``: no live mark at all, or both the DMP cookie's and the vendor's marks
valid consents). The delta (``DELTA``) against what was sent, by anti-joins:

    add     current, allowed, matched, and not sent (incremental) / every one (full)
    remove  sent, and no longer an allowed member; in full mode also sent under another ID
            or unmatched now (incremental trusts the ID it sent)
    keep    sent, still an allowed member, sent before ``due_before``: its record is due a
            fresh lifetime (incremental only: full sends it again)

A destination's erased browsers (the removal list of the key-value store, ``EXPORT_ERASED``)
join the delta as ``erased`` removes, named by their destination ID alone; a sent member with
the same ID is not removed twice, and once the destination answered, what it was sent under
that ID is forgotten (``Delivered.erased``). Ranks (``RANKS``): erased, remove, add, keep. Rows
come out by rank, then by the key-value store's shard of the uid (so that what a batch records
there falls in few of its maps), then by ID: the same order on both engines.

The statements are written once with ``:name`` parameters; ``Dialect`` holds what the two
engines write differently (DuckDB's ``$name``, a JSON line, the shard's function).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cookiematch.dmp.analytics.tables import CONSENT, EXPORTED, MEMBERSHIPS, SYNCS
from cookiematch.dmp.consent import CONSENT_MAX_AGE, HOST
from cookiematch.dmp.keys import SHARDS

EXPORT_CURRENT = "export_current"  # (profile, id, allowed) of the pending delta
EXPORT_DELTA = "export_delta"  # (rank, action, profile, id) of the pending delta
EXPORT_ERASED = "export_erased"  # (id): the removal list's IDs, filled by each engine

ERASED, REMOVE, ADD, KEEP = "erased", "remove", "add", "keep"
RANKS = {ERASED: 0, REMOVE: 1, ADD: 2, KEEP: 3}
"""The order rows come out in: removes before any add may name the same ID."""

_PARAM = re.compile(r"(?<![:\w]):(\w+)")

NEVER = -1.0  # a time before any membership was written: none has lapsed
NO_PARTY = ""  # a destination without a vendor ID, or one taking DMP uids (no partner)


@dataclass(frozen=True, slots=True)
class ExportTarget:
    """One export's question: ``segment`` to ``destination``, in the IDs of ``partner`` (None:
    DMP uids), under the consent of ``party`` (``consent.vendor_party``; None: a destination
    without a vendor ID), at ``now``; ``full``: every member again; ``due_before``: records
    written before it are due a fresh lifetime."""

    destination: str
    segment: str
    partner: str | None
    party: str | None
    full: bool
    now: float
    due_before: float
    membership_ttl: float | None = None  # a membership written longer ago has lapsed

    def params(self) -> dict[str, object]:
        return {
            "destination": self.destination,
            "segment": self.segment,
            "partner": self.partner or NO_PARTY,
            "party": self.party or NO_PARTY,
            "host": HOST,
            "now": self.now,
            "max_age": CONSENT_MAX_AGE,
            "full": self.full,
            "due_before": self.due_before,
            "lapsed_before": NEVER
            if self.membership_ttl is None
            else self.now - self.membership_ttl,
        }


@dataclass(frozen=True, slots=True)
class ExportCounts:
    """The delta's figures: members of the segment, those left out for consent, those without
    an ID (and not sent before), those sent before and still members; and the rows by action."""

    members: int
    no_consent: int
    unmatched: int
    unchanged: int
    actions: dict[str, int]


@dataclass(slots=True)
class Delivered:
    """What a destination answered of a delta: ``added`` (uid, ID) accepted, ``dropped`` uids
    whose removes it answered, ``kept`` uids still sent (a fresh record), ``erased`` IDs of
    the removal list it answered. ``added_at``: when each of ``added`` was sent, if not at the
    commit's time (records carried over from the key-value store)."""

    added: list[tuple[str, str]] = field(default_factory=list)
    added_at: list[float] | None = None
    dropped: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)


ExportRow = tuple[str, str, str]
"""(action, DMP uid, destination ID); an erased browser's uid is ``""``."""


class Dialect:
    """What the engines write differently in these statements."""

    def __init__(self, name: str, marker: str, json_line: str, shard: str) -> None:
        self.name = name
        self._marker = marker
        self._json_line = json_line
        self._shard = shard

    def rows(self) -> str:
        """The pending delta's rows (action, profile, id), in ``RANKS``' order, then by the
        key-value store's shard of the uid (``keys.shard_of``: what a batch records falls in
        few of the store's maps), then by ID."""
        shard = self._shard.format(column="profile")
        return f"SELECT action, profile, id FROM {EXPORT_DELTA} ORDER BY rank, {shard}, id, profile"

    def sql(self, template: str) -> str:
        """``template`` with its ``:name`` parameters in this dialect's markers."""
        return _PARAM.sub(lambda m: self._marker + m.group(1), template)

    def bind(self, template: str, params: Mapping[str, object]) -> tuple[str, dict[str, object]]:
        """``template`` in this dialect, with the ``params`` it names."""
        names = set(_PARAM.findall(template))
        return self.sql(template), {k: v for k, v in params.items() if k in names}

    def lines(self, csv: bool) -> str:
        """A query of the pending delta's file lines (rank, id, line), a CSV header first."""
        if csv:
            quoted = (
                "CASE WHEN id LIKE '%,%' OR id LIKE '%\"%' OR id LIKE :cr OR id LIKE :lf "
                "THEN '\"' || replace(id, '\"', '\"\"') || '\"' ELSE id END"
            )
            line = f"{_FILE_ACTION} || ',' || {quoted}"
            header = "SELECT -1 AS rank, '' AS id, 'action,id' AS line UNION ALL "
        else:
            line = self._json_line.format(action=_FILE_ACTION)
            header = ""
        return (
            f"{header}SELECT rank, id, {line} AS line FROM {EXPORT_DELTA} WHERE action <> '{KEEP}'"
        )


_FILE_ACTION = f"CASE WHEN action = '{ERASED}' THEN '{REMOVE}' ELSE action END"

LINE_PARAMS = {"cr": "%\r%", "lf": "%\n%"}
"""The parameters of ``Dialect.lines``: a carriage return or line feed makes a CSV field
quoted (as Python's ``csv`` module quotes it)."""

SHARD_FUNCTION = "kv_shard"
"""DuckDB's name of ``keys.shard_of`` (a Python function the engine registers)."""

DUCKDB = Dialect(
    "duckdb", "$", "json_object('action', {action}, 'id', id)::VARCHAR",
    SHARD_FUNCTION + "({column})",
)  # fmt: skip
SPARK = Dialect(
    "spark", ":", "to_json(named_struct('action', {action}, 'id', id))",
    f"pmod(crc32({{column}}), {SHARDS})",  # keys.shard_of: CRC-32 of the UTF-8 bytes
)  # fmt: skip

_LIVE = "(expires_at IS NULL OR expires_at > :now)"
_VALID = "(NOT refused AND tc_last_updated IS NOT NULL AND :now - tc_last_updated <= :max_age)"

CURRENT = f"""
WITH marks AS (
    SELECT profile,
           max(CASE WHEN party = :host AND {_VALID} THEN 1 ELSE 0 END) AS host_ok,
           max(CASE WHEN party = :party AND {_VALID} THEN 1 ELSE 0 END) AS party_ok
      FROM {CONSENT} WHERE {_LIVE} GROUP BY profile),
ids AS (SELECT profile, partner_uid FROM {SYNCS} WHERE partner = :partner AND {_LIVE})
SELECT m.profile,
       CASE WHEN :partner = '' THEN m.profile ELSE i.partner_uid END AS id,
       (g.profile IS NULL OR (g.host_ok = 1 AND g.party_ok = 1)) AS allowed
  FROM {MEMBERSHIPS} m
  LEFT JOIN marks g ON g.profile = m.profile
  LEFT JOIN ids i ON i.profile = m.profile
 WHERE m.segment = :segment
   AND (m.written_at IS NULL OR m.written_at > :lapsed_before)"""
"""The current members of the segment: (profile, id, allowed)."""

_SENT = f"""(SELECT profile, sent_id, sent_at FROM {EXPORTED}
              WHERE destination = :destination AND segment = :segment)"""

DELTA = f"""
SELECT {RANKS[ADD]} AS rank, '{ADD}' AS action, c.profile, c.id
  FROM {EXPORT_CURRENT} c LEFT JOIN {_SENT} s ON s.profile = c.profile
 WHERE c.allowed AND c.id IS NOT NULL AND (s.profile IS NULL OR :full)
UNION ALL
SELECT {RANKS[REMOVE]}, '{REMOVE}', s.profile, s.sent_id
  FROM {_SENT} s LEFT JOIN {EXPORT_CURRENT} c ON c.profile = s.profile
 WHERE (c.profile IS NULL OR NOT c.allowed
        OR (:full AND (c.id IS NULL OR c.id <> s.sent_id)))
   AND s.sent_id NOT IN (SELECT id FROM {EXPORT_ERASED})
UNION ALL
SELECT {RANKS[KEEP]}, '{KEEP}', s.profile, s.sent_id
  FROM {_SENT} s JOIN {EXPORT_CURRENT} c ON c.profile = s.profile
 WHERE c.allowed AND NOT :full AND s.sent_at < :due_before
UNION ALL
SELECT {RANKS[ERASED]}, '{ERASED}', '', id FROM {EXPORT_ERASED}"""
"""The delta: (rank, action, profile, id)."""

COUNTS = f"""
SELECT count(*),
       coalesce(sum(CASE WHEN NOT c.allowed THEN 1 ELSE 0 END), 0),
       coalesce(sum(CASE WHEN c.allowed AND c.id IS NULL AND (:full OR s.profile IS NULL)
                    THEN 1 ELSE 0 END), 0),
       coalesce(sum(CASE WHEN c.allowed AND NOT :full AND s.profile IS NOT NULL
                    THEN 1 ELSE 0 END), 0)
  FROM {EXPORT_CURRENT} c LEFT JOIN {_SENT} s ON s.profile = c.profile"""
"""The delta's figures (``ExportCounts``' first four)."""

ACTIONS = f"SELECT action, count(*) FROM {EXPORT_DELTA} GROUP BY action"
SENT = f"""SELECT profile, sent_id FROM {EXPORTED}
 WHERE destination = :destination AND segment = :segment"""
