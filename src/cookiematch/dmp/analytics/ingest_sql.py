"""Ingestion on the engine: one partner's files validated, resolved and merged into the
profiles in SQL, with the outcomes of the per-record path (``dmp/ingest/pipeline.py``).

    lines (staged) ──▶ records ─┬─▶ attributes, events, removes ──▶ verdict per line
                                 └─ rules of ``ingest/records.py`` as parameters
    verdict ──▶ join the sync map ──┬─▶ consent ──▶ merge into profiles (one transaction)
                                    └─▶ not synced ──▶ pending (the key-value store)

A JSON Lines file is framed by the engine's own CSV reader when a pass over its bytes shows
it frames the lines as ``ingest/readers.py`` does (``lines.py``), else by that reader; either
way a line has the same number. A JSON line is staged as its text, a CSV/TSV row as its cells
under the file's header. The files are staged in a thread while the partner's sync map is
exported from the key-value store. The staged lines are then validated and resolved
``CHUNK_LINES`` at a time, each chunk's attribute operations and events kept with their
place in file order; they are merged once at the end and written in one transaction. The
run's rows carry a profile's number (``pid``), not its uid, until then. During a run the
engine's buffers take ``ENGINE_SHARE`` of its memory limit, so that the whole process stays
within the limit. Everything after staging is SQL:

- a JSON line is decoded as ``RawRecord`` would (an object of ``uid``, ``attributes``,
  ``events``, ``remove`` with their types); a CSV cell becomes a value by its declared trait
  (``number``, ``bool``, ``list``; else a string); then every rule of ``Checker``: uid, sizes,
  names, value lengths, declared types and kinds, event times. A line that breaks any is
  refused; its reason is worded by ``Checker`` itself (refused lines are few), so the wording
  is written once;
- partner uids are joined against the partner's sync map (``sync_map.py``); a profile whose
  stored consent refuses the partner refuses its records (``CONSENT_REASON``); records of
  uids not synced go to the pending records of the key-value store, as the per-record path
  parks them;
- attributes merge last-write-wins in file order (within a record, ``remove`` before the
  attributes, a ``null`` deleting), each set one living its trait's TTL from ``now``; events
  are deduplicated by (name, ts), lapse their trait's TTL after ``ts`` rounded up to the hour
  (``TraitCatalog.event_expiry``; those already lapsed are counted, not stored) and are cut to
  the newest ``max_events_per_name`` of each name, as the profile reader reads them (sorted
  only where a name holds more).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from cookiematch.clock import Clock
from cookiematch.dmp.analytics import sync_map
from cookiematch.dmp.analytics.lines import BLANK, line_ends, read_csv_sql
from cookiematch.dmp.analytics.settings import MEMORY_LIMIT_MB
from cookiematch.dmp.analytics.tables import (
    ATTRIBUTES,
    CONSENT,
    EVENTS,
    KIND_BOOL,
    KIND_FLOAT,
    KIND_INT,
    KIND_LIST,
    KIND_STRING,
    PROFILES,
)
from cookiematch.dmp.consent import CONSENT_MAX_AGE, HOST
from cookiematch.dmp.ingest.pending import PendingRecords
from cookiematch.dmp.ingest.pipeline import CONSENT_REASON, IngestReport
from cookiematch.dmp.ingest.readers import (
    Batch,
    Format,
    Payload,
    Progress,
    detect_format,
    read_batches,
)
from cookiematch.dmp.ingest.records import (
    FUTURE_SLACK,
    LIST_SEPARATOR,
    MAX_ATTRIBUTES,
    MAX_EVENTS,
    MAX_LIST,
    MAX_STRING,
    NAME,
    UID,
    Checker,
    Record,
)
from cookiematch.dmp.ingest.rejects import Reject, reject, reject_code
from cookiematch.dmp.traits.schema import EVENT_EXPIRY_STEP, TraitCatalog, TraitKind
from cookiematch.errors import RecordError
from cookiematch.storage.base import Store

PARK_BATCH = 50_000  # records written to pending at a time (``pipeline.RECHECK_EVERY``)
STAGE_ROWS = 100_000  # lines staged per insert (lines framed in Python)
SYNC_BATCH = 50_000  # sync map entries read from the store per page
CHUNK_LINES = 500_000  # staged lines validated, resolved and merged at a time
ENGINE_SHARE = 0.4
"""The share of the engine's memory limit its buffers take during an ingestion; the rest is
for what it allocates beside them (the reader's, the queries' working memory) and for the
Python side (the sync map's export, the lines sent back to the key-value store)."""

PREFIX = "ing_"  # every table of a run is a temporary table named so
FILES, LINES, TRAIT_DEFS = "ing_files", "ing_lines", "ing_traits"
SHARED = "ing_shared"
"""An in-memory database beside the engine's, seen by every connection of the engine: the sync
map is written there by a connection of its own while the lines are staged."""
SYNC_MAP = f"{SHARED}.ing_sync_map"
RECORDS, ATTRS, EVENTS_IN, REMOVES = "ing_records", "ing_attrs", "ing_events", "ing_removes"
VERDICT = "ing_verdict"
TOUCHED, LAPSED = "ing_touched", "ing_lapsed"
CHUNK = f"(SELECT file, line, body, cells FROM {LINES} WHERE seq >= $start AND seq < $end)"
"""The lines of a chunk, read in place (the staged lines are in ``seq`` order: the engine's
zone maps skip the others)."""
RUN_OPS, RUN_ATTRS, RUN_EVENTS = "ing_run_ops", "ing_run_attrs", "ing_run_events"
PROFILE_IDS, WRITTEN_EVENTS = "ing_profile_ids", "ing_written_events"
KEPT_EVENTS, CUT, LAPSES = "ing_kept_events", "ing_cut", "ing_lapses"

STAGING = f"""
CREATE OR REPLACE TEMP TABLE {FILES} (file INTEGER, source VARCHAR, header VARCHAR[]);
CREATE OR REPLACE TEMP TABLE {LINES} (
    file INTEGER, line INTEGER, body VARCHAR, cells VARCHAR[], seq BIGINT);
CREATE OR REPLACE TEMP TABLE {TOUCHED} (pid INTEGER);
CREATE OR REPLACE TEMP TABLE {LAPSED} (pid INTEGER, name VARCHAR, ts DOUBLE);
CREATE OR REPLACE TEMP TABLE {RUN_OPS} (pid INTEGER, name VARCHAR, seq BIGINT, value JSON);
CREATE OR REPLACE TEMP TABLE {RUN_EVENTS} (pid INTEGER, name VARCHAR, ts DOUBLE, expires_at DOUBLE);
"""

_PY_FLOAT = r"[+-]?(\d(_?\d)*(\.(\d(_?\d)*)?)?|\.\d(_?\d)*)([eE][+-]?\d(_?\d)*)?"
"""What Python's ``float()`` reads as a finite number (surrounding whitespace trimmed first)."""


def _cell_number(text: str) -> str:
    """SQL: a CSV cell (``text``) of a number trait as JSON, NULL when it is not a number;
    an integer when it is one and written without a point (``records._cell``)."""
    trimmed = f"replace(trim({text}, ' \t\n\r\x0b\x0c'), '_', '')"
    number = f"TRY_CAST({trimmed} AS DOUBLE)"
    return f"""CASE WHEN regexp_full_match(trim({text}, ' \t\n\r\x0b\x0c'), $py_float)
        THEN CASE WHEN {number} = trunc({number}) AND NOT contains({text}, '.')
                  THEN TRY_CAST(TRY_CAST({number} AS HUGEINT) AS VARCHAR)::JSON
                  ELSE to_json({number}) END END"""


def _cell_value(kind: str, text: str) -> str:
    """SQL: a CSV cell as the JSON value its trait's kind makes of it (NULL: refused)."""
    return f"""CASE {kind}
        WHEN '{TraitKind.NUMBER.value}' THEN {_cell_number(text)}
        WHEN '{TraitKind.BOOL.value}' THEN CASE
            WHEN lower({text}) IN ('true', '1') THEN 'true'::JSON
            WHEN lower({text}) IN ('false', '0') THEN 'false'::JSON END
        WHEN '{TraitKind.LIST.value}' THEN
            to_json(list_filter(string_split({text}, $separator), lambda i: i <> ''))
        ELSE to_json({text}) END"""


def _value_kind(value: str) -> str:
    """SQL: the engine's kind of a JSON value (``tables.KIND_*``; NULL for an object). A
    number written without a point or an exponent is an integer, however large."""
    return f"""CASE json_type({value})
        WHEN 'VARCHAR' THEN '{KIND_STRING}' WHEN 'BOOLEAN' THEN '{KIND_BOOL}'
        WHEN 'ARRAY' THEN '{KIND_LIST}' WHEN 'OBJECT' THEN NULL
        ELSE CASE WHEN regexp_full_match({value}::VARCHAR, '-?[0-9]+')
                  THEN '{KIND_INT}' ELSE '{KIND_FLOAT}' END END"""


# Records: one row per staged line; a JSON line's shape is RawRecord's (unknown keys refused).
PARSE = [
    # a JSON line parsed once for its parts (``p``: uid, attributes, events, remove; NULL
    # when it is not JSON; each part read on its own after), once for its keys; an object
    # when valid and opening with a brace (else asked: whitespace may come first). A part is
    # minified JSON: its first character is its type's (a string's quote, an object's brace,
    # an array's bracket)
    f"""CREATE OR REPLACE TEMP TABLE {RECORDS} AS
    WITH decoded AS (
        SELECT file, line,
            CASE WHEN p IS NULL THEN false WHEN starts_with(body, '{{') THEN true
                 ELSE json_type(body) = 'OBJECT' END AS object,
            p, CASE WHEN p IS NOT NULL THEN json_keys(body) END AS keys
          FROM (SELECT file, line, body,
                       TRY(json_extract(body, ['$.uid', '$.attributes', '$.events', '$.remove']))
                       AS p
                  FROM {CHUNK} WHERE cells IS NULL))
    SELECT file, line, p[2] AS attrs, p[3] AS events, p[4] AS remove, p[1]->>'$' AS uid,
        coalesce(object
            AND len(list_filter(keys,
                    lambda k: k NOT IN ('uid', 'attributes', 'events', 'remove'))) = 0
            AND starts_with(p[1], '"')
            AND coalesce(starts_with(p[2], '{{'), true)
            AND coalesce(starts_with(p[3], '['), true)
            AND coalesce(starts_with(p[4], '['), true), false) AS shaped,
        coalesce(json_array_length(p[3]), 0) AS n_events,
        -- n keys need 5n + 1 characters at least ({"":0}): counted only where more than the
        -- limit fit
        CASE WHEN length(p[2]) >= 5 * $max_attributes + 6 THEN len(json_keys(p[2])) END
            AS n_attrs
      FROM decoded
    UNION ALL
    SELECT l.file, l.line, NULL, NULL, NULL,
        coalesce(l.cells[list_position(f.header, 'uid')], ''),
        len(l.cells) = len(f.header),
        (coalesce(l.cells[list_position(f.header, 'event')], '') <> '')::INTEGER,
        NULL
      FROM {CHUNK} l JOIN {FILES} f USING (file) WHERE l.cells IS NOT NULL""",
    # attributes: (name, JSON value; NULL for a JSON null, its kind) of each line; ``cell``:
    # from a CSV row
    f"""CREATE OR REPLACE TEMP TABLE {ATTRS} AS
    SELECT file, line, name, value, {_value_kind("value")} AS kind, cell
      FROM (SELECT r.file, r.line, e.key AS name,
                   CASE WHEN e.type <> 'NULL' THEN e.value END AS value, false AS cell
              FROM {RECORDS} r, json_each(r.attrs) e WHERE r.shaped AND r.attrs IS NOT NULL
    UNION ALL
    SELECT c.file, c.line, c.name, {_cell_value("t.kind", "c.text")}, true
      FROM (SELECT l.file, l.line, unnest(f.header) AS name, unnest(l.cells) AS text
              FROM {CHUNK} l JOIN {FILES} f USING (file)
             WHERE l.cells IS NOT NULL AND len(l.cells) = len(f.header)) c
      LEFT JOIN {TRAIT_DEFS} t USING (name)
     WHERE c.text <> '' AND c.name NOT IN ('uid', 'event', 'ts', 'remove'))""",
    f"""CREATE OR REPLACE TEMP TABLE {EVENTS_IN} AS
    SELECT file, line, p[1]->>'$' AS name, ts,
        coalesce(starts_with(e, '{{') AND starts_with(p[1], '"') AND ts IS NOT NULL
            AND len(list_filter(json_keys(e), lambda k: k NOT IN ('name', 'ts'))) = 0,
            false) AS shaped
      FROM (SELECT file, line, e, p,
                   CASE WHEN NOT starts_with(p[2], '"') THEN TRY_CAST(p[2]::VARCHAR AS DOUBLE)
                   END AS ts
              FROM (SELECT file, line, e, json_extract(e, ['$.name', '$.ts']) AS p
                      FROM (SELECT file, line, unnest(from_json(events, '["JSON"]')) AS e
                              FROM {RECORDS}
                             WHERE shaped AND events IS NOT NULL AND n_events > 0)))
    UNION ALL
    SELECT l.file, l.line, l.cells[list_position(f.header, 'event')],
        CASE WHEN regexp_full_match(
                trim(coalesce(l.cells[list_position(f.header, 'ts')], ''), ' \t\n\r\x0b\x0c'),
                $py_float)
             THEN TRY_CAST(replace(trim(l.cells[list_position(f.header, 'ts')],
                  ' \t\n\r\x0b\x0c'), '_', '') AS DOUBLE) END,
        true
      FROM {CHUNK} l JOIN {FILES} f USING (file)
     WHERE l.cells IS NOT NULL AND coalesce(l.cells[list_position(f.header, 'event')], '') <> ''
       AND len(l.cells) = len(f.header)""",
    f"""CREATE OR REPLACE TEMP TABLE {REMOVES} AS
    SELECT file, line, r->>'$' AS name, coalesce(json_type(r) = 'VARCHAR', false) AS shaped
      FROM (SELECT file, line, unnest(from_json(remove, '["JSON"]')) AS r
              FROM {RECORDS} WHERE shaped AND remove IS NOT NULL)
    UNION ALL
    SELECT file, line, name, true
      FROM (SELECT l.file, l.line, unnest(list_filter(string_split(
                   coalesce(l.cells[list_position(f.header, 'remove')], ''), $separator),
                   lambda i: i <> '')) AS name
              FROM {CHUNK} l JOIN {FILES} f USING (file)
             WHERE l.cells IS NOT NULL AND len(l.cells) = len(f.header))""",
]


_TRAIT_KIND = f"""CASE {{kind}} WHEN '{KIND_STRING}' THEN '{TraitKind.STRING.value}'
    WHEN '{KIND_BOOL}' THEN '{TraitKind.BOOL.value}'
    WHEN '{KIND_LIST}' THEN '{TraitKind.LIST.value}'
    ELSE '{TraitKind.NUMBER.value}' END"""


# A line's verdict: every rule of Checker.validate (any broken one refuses the line).
VERDICT_SQL = f"""
CREATE OR REPLACE TEMP TABLE {VERDICT} AS
WITH bad_attrs AS (
    SELECT DISTINCT a.file, a.line FROM {ATTRS} a LEFT JOIN {TRAIT_DEFS} t USING (name)
     WHERE NOT regexp_full_match(a.name, $name_pattern)
        OR (a.value IS NOT NULL AND (
            a.kind IS NULL
            -- a string's JSON is at least its length plus its quotes: decoded only when longer
            OR (a.kind = '{KIND_STRING}' AND length(a.value) - 2 > $max_string
                AND length(a.value->>'$') > $max_string)
            OR (a.kind = '{KIND_FLOAT}' AND NOT isfinite((a.value)::DOUBLE))
            OR (a.kind = '{KIND_LIST}' AND (
                json_array_length(a.value) > $max_list
                OR len(list_filter(from_json(a.value, '["JSON"]'),
                       lambda i: coalesce(json_type(i) <> 'VARCHAR'
                                     OR length(i->>'$') > $max_string, true))) > 0))
            OR (t.kind IS NULL AND $reject_unknown)
            OR (t.kind IS NOT NULL
                AND t.kind <> {_TRAIT_KIND.format(kind="a.kind")})))),
  attr_counts AS (SELECT file, line, count(*) AS n FROM {ATTRS} WHERE cell GROUP BY ALL),
  bad_events AS (
    SELECT DISTINCT e.file, e.line FROM {EVENTS_IN} e LEFT JOIN {TRAIT_DEFS} t USING (name)
     WHERE NOT e.shaped OR e.ts IS NULL
        OR NOT regexp_full_match(e.name, $name_pattern)
        OR (t.kind IS NULL AND $reject_unknown)
        OR (t.kind IS NOT NULL AND t.kind <> '{TraitKind.EVENT.value}')
        OR NOT (e.ts > 0 AND e.ts <= $latest)),
  bad_removes AS (
    SELECT DISTINCT file, line FROM {REMOVES}
     WHERE NOT shaped OR NOT regexp_full_match(name, $name_pattern)),
  attr_cells AS (  -- a CSV cell its trait's kind does not read
    SELECT DISTINCT file, line FROM {ATTRS} WHERE cell AND value IS NULL)
SELECT r.file, r.line, r.uid,
    coalesce(r.shaped AND regexp_full_match(r.uid, $uid_pattern)
        AND coalesce(r.n_attrs, c.n, 0) <= $max_attributes AND r.n_events <= $max_events
        AND ba.line IS NULL AND be.line IS NULL AND br.line IS NULL AND ac.line IS NULL,
        false) AS valid
  FROM {RECORDS} r
  LEFT JOIN attr_counts c USING (file, line)
  LEFT JOIN bad_attrs ba USING (file, line)
  LEFT JOIN bad_events be USING (file, line)
  LEFT JOIN bad_removes br USING (file, line)
  LEFT JOIN attr_cells ac USING (file, line)
"""

RESOLVED = "ing_resolved"
SYNC_UNIQUE = "ing_sync_unique"
REFUSING = "ing_refusing"

# the sync map, one DMP uid per partner uid; each DMP uid numbered (``pid``): the run's
# intermediate rows carry the number, narrower than the uid, and take the uid back at the end
SYNC_IDS = [
    f"""CREATE OR REPLACE TEMP TABLE {PROFILE_IDS} AS
    SELECT dmp_uid AS profile, (row_number() OVER ())::INTEGER AS pid
      FROM (SELECT DISTINCT dmp_uid FROM {SYNC_MAP})""",
    f"""CREATE OR REPLACE TEMP TABLE {SYNC_UNIQUE} AS
    SELECT s.partner_uid, p.pid
      FROM (SELECT DISTINCT ON (partner_uid) * FROM {SYNC_MAP}) s
      JOIN {PROFILE_IDS} p ON p.profile = s.dmp_uid""",
    f"DROP TABLE {SYNC_MAP}",
]

# Valid lines with the profile they resolve to (NULL: not synced), and whether its stored
# consent refuses the partner (``consent.allows``: any live mark, and not both the DMP
# cookie's and the partner's a consent whose TC string is at most CONSENT_MAX_AGE old).
RESOLVE = [
    f"""CREATE OR REPLACE TEMP TABLE {RESOLVED} AS
    SELECT v.file, v.line, s.pid
      FROM {VERDICT} v LEFT JOIN {SYNC_UNIQUE} s ON s.partner_uid = v.uid
     WHERE v.valid""",
    f"""CREATE OR REPLACE TEMP TABLE {REFUSING} AS
    SELECT p.pid FROM {CONSENT} c JOIN {PROFILE_IDS} p ON p.profile = c.profile
     WHERE (c.expires_at IS NULL OR c.expires_at > $now)
       AND p.pid IN (SELECT pid FROM {RESOLVED})
     GROUP BY p.pid
    HAVING NOT (
        bool_or(party = $host AND NOT refused AND tc_last_updated IS NOT NULL
                AND $now - tc_last_updated <= $consent_max_age)
        AND bool_or(party = $partner AND NOT refused AND tc_last_updated IS NOT NULL
                    AND $now - tc_last_updated <= $consent_max_age))""",
]


def event_expiry(ts: str, ttl: str) -> str:
    """SQL: when an event at ``ts`` stops counting (``TraitCatalog.event_expiry``); ``ttl``:
    its trait's TTL, NULL for the default."""
    return f"ceil(({ts} + coalesce({ttl}, $event_ttl)) / $step) * $step"


ACCEPTED = "ing_accepted"
NEW_EVENTS = "ing_new_events"

MERGE = [
    f"""CREATE OR REPLACE TEMP TABLE {ACCEPTED} AS
    SELECT file, line, pid FROM {RESOLVED}
     WHERE pid IS NOT NULL AND pid NOT IN (SELECT pid FROM {REFUSING})""",
    f"""CREATE OR REPLACE TEMP TABLE {NEW_EVENTS} AS
    SELECT DISTINCT x.pid, e.name, trunc(e.ts) AS ts,
        {event_expiry("trunc(e.ts)", "t.ttl")} AS expires_at
      FROM {EVENTS_IN} e JOIN {ACCEPTED} x USING (file, line)
      LEFT JOIN {TRAIT_DEFS} t USING (name)""",
]

# what the chunks merged, kept for the one write at the end: every attribute operation with
# its place in file order (a record's removes before its attributes), the new events
KEEP = [
    f"""INSERT INTO {RUN_OPS}
    SELECT x.pid, r.name, (x.file::BIGINT << 33) + (x.line::BIGINT << 1), NULL
      FROM {REMOVES} r JOIN {ACCEPTED} x USING (file, line)
    UNION ALL
    SELECT x.pid, a.name, (x.file::BIGINT << 33) + (x.line::BIGINT << 1) + 1, a.value
      FROM {ATTRS} a JOIN {ACCEPTED} x USING (file, line)""",
    f"INSERT INTO {RUN_EVENTS} SELECT pid, name, ts, expires_at FROM {NEW_EVENTS}",
]

CHUNK_TABLES = [
    LINES,
    RECORDS,
    ATTRS,
    EVENTS_IN,
    REMOVES,
    VERDICT,
    RESOLVED,
    REFUSING,
    ACCEPTED,
    NEW_EVENTS,
]
"""The staged lines and the tables of a chunk, dropped once the last chunk is done."""

RUN_TIME = "$now"
"""When an ingestion's attributes are set: all at the run's time."""
OWN_TIME = "f.set_at"
"""When staged updates' attributes are set (``staged_sql.py``): each at its update's time,
which ``RUN_OPS`` then carries (``set_at``)."""


def final_sql(set_at: str) -> list[str]:
    """What a run merged, before the one write: each (profile, name)'s last operation in
    ``RUN_OPS`` (``seq`` order), the events of ``RUN_EVENTS`` lapsing after ``$keep_after``
    with those held, each profile's lapse; by the profile's number (narrower than its uid,
    which each write takes back). ``set_at``: when an attribute was set (``RUN_TIME``,
    ``OWN_TIME``)."""
    own = ", arg_max(set_at, seq) AS set_at" if set_at == OWN_TIME else ""
    return [
        # the last operation on each (profile, name) in file order; its value's kind
        f"""CREATE OR REPLACE TEMP TABLE {RUN_ATTRS} AS
        SELECT *, {_value_kind("value")} AS kind
          FROM (SELECT pid, name, arg_max_null(value, seq) AS value{own}
                  FROM {RUN_OPS} GROUP BY pid, name)""",
        f"DROP TABLE {RUN_OPS}",
        f"""CREATE OR REPLACE TEMP TABLE {WRITTEN_EVENTS} AS
        SELECT pid, name, ts, expires_at FROM {RUN_EVENTS} WHERE expires_at > $keep_after""",
        f"DROP TABLE {RUN_EVENTS}",
        # the events of each (profile, name) written to: held and new, one per ts; the
        # newest kept where a name has more than the cap (only those sorted: a window is
        # costly)
        f"""CREATE OR REPLACE TEMP TABLE {KEPT_EVENTS} AS
        SELECT pid, name, ts, max(expires_at) AS expires_at
          FROM (SELECT pid, name, ts, expires_at FROM {WRITTEN_EVENTS}
                UNION ALL
                SELECT p.pid, e.name, e.ts, e.expires_at
                  FROM {EVENTS} e JOIN {PROFILE_IDS} p ON p.profile = e.profile
                 SEMI JOIN (SELECT DISTINCT pid, name FROM {WRITTEN_EVENTS}) n USING (pid, name))
         GROUP BY pid, name, ts""",
        f"""CREATE OR REPLACE TEMP TABLE {CUT} AS
        SELECT pid, name FROM {KEPT_EVENTS} GROUP BY pid, name HAVING count(*) > $cap""",
        # a profile lapses with the last of its data: held profiles get later, new ones appear
        f"""CREATE OR REPLACE TEMP TABLE {LAPSES} AS
        SELECT i.profile, l.expires_at
          FROM (SELECT pid, max(expires_at) AS expires_at
                  FROM (SELECT f.pid, {set_at} + coalesce(t.ttl, $attribute_ttl) AS expires_at
                          FROM {RUN_ATTRS} f LEFT JOIN {TRAIT_DEFS} t USING (name)
                         WHERE f.value IS NOT NULL
                        UNION ALL
                        SELECT pid, expires_at FROM {WRITTEN_EVENTS})
                 GROUP BY pid) l
          JOIN {PROFILE_IDS} i USING (pid)""",
    ]


def write_sql(set_at: str) -> list[str]:
    """What ``final_sql(set_at)`` merged, written to the profiles' tables (in the caller's
    transaction): each (profile, name)'s attribute replaced or deleted, each name's events
    replaced, the profiles' lapses."""
    return [
        f"""DELETE FROM {ATTRIBUTES} a
         USING (SELECT p.profile, f.name FROM {RUN_ATTRS} f JOIN {PROFILE_IDS} p USING (pid)) f
         WHERE a.profile = f.profile AND a.name = f.name""",
        f"""INSERT INTO {ATTRIBUTES}
        SELECT p.profile, f.name, f.kind,
            CASE WHEN f.kind = '{KIND_STRING}' THEN f.value->>'$' END,
            CASE WHEN f.kind = '{KIND_INT}' THEN (f.value::VARCHAR)::BIGNUM END,
            CASE WHEN f.kind = '{KIND_FLOAT}' THEN f.value::DOUBLE END,
            CASE WHEN f.kind = '{KIND_BOOL}' THEN f.value::BOOLEAN END,
            CASE WHEN f.kind = '{KIND_LIST}' THEN from_json(f.value, '["VARCHAR"]') END,
            {set_at}, {set_at} + coalesce(t.ttl, $attribute_ttl)
          FROM {RUN_ATTRS} f JOIN {PROFILE_IDS} p USING (pid)
          LEFT JOIN {TRAIT_DEFS} t USING (name)
         WHERE f.value IS NOT NULL""",
        f"""DELETE FROM {EVENTS} e
         USING (SELECT p.profile, k.name FROM (SELECT DISTINCT pid, name FROM {KEPT_EVENTS}) k
                  JOIN {PROFILE_IDS} p USING (pid)) k
         WHERE e.profile = k.profile AND e.name = k.name""",
        f"""INSERT INTO {EVENTS}
        SELECT p.profile, k.name, k.ts, k.expires_at
          FROM (SELECT pid, name, ts, expires_at FROM {KEPT_EVENTS}
                 ANTI JOIN {CUT} USING (pid, name)
                UNION ALL
                SELECT pid, name, ts, expires_at
                  FROM (SELECT * FROM {KEPT_EVENTS} SEMI JOIN {CUT} USING (pid, name))
                QUALIFY row_number() OVER (PARTITION BY pid, name ORDER BY ts DESC) <= $cap) k
          JOIN {PROFILE_IDS} p USING (pid)""",
        f"""UPDATE {PROFILES} p SET expires_at = greatest(p.expires_at, n.expires_at)
          FROM {LAPSES} n WHERE p.id = n.profile AND p.expires_at IS NOT NULL""",
        f"""INSERT INTO {PROFILES}
        SELECT profile, expires_at FROM {LAPSES}
         WHERE profile NOT IN (SELECT id FROM {PROFILES})""",
    ]


FINAL, WRITE = final_sql(RUN_TIME), write_sql(RUN_TIME)
"""An ingestion's merge and write."""

COUNTS = f"""SELECT
    (SELECT count(*) FROM {ACCEPTED}),
    (SELECT count(*) FROM {ATTRS} a SEMI JOIN {ACCEPTED} x USING (file, line)
      WHERE a.value IS NOT NULL)"""


# events already lapsed, counted once each over the run (as the per-record path merges a
# profile's events before counting); profiles written, counted once each
LAPSED_SQL = f"""INSERT INTO {LAPSED}
    SELECT DISTINCT pid, name, ts FROM {NEW_EVENTS} WHERE expires_at <= $now"""
TOTALS = f"""SELECT (SELECT count(DISTINCT pid) FROM {TOUCHED}),
    (SELECT count(*) FROM (SELECT DISTINCT * FROM {LAPSED}))"""


def _parameters(catalog: TraitCatalog, partner_id: str, now: float) -> dict[str, Any]:
    """Every value the statements take: the rules of ``ingest/records.py``, the catalog's
    defaults and lifetimes, the consent rule."""
    return {
        "now": now,
        "keep_after": now,  # events already lapsed are counted, not stored
        "uid_pattern": UID.pattern,
        "name_pattern": NAME.pattern,
        "py_float": _PY_FLOAT,
        "separator": LIST_SEPARATOR,
        "max_string": MAX_STRING,
        "max_list": MAX_LIST,
        "max_attributes": MAX_ATTRIBUTES,
        "max_events": MAX_EVENTS,
        "latest": now + FUTURE_SLACK,
        "reject_unknown": catalog.reject_unknown,
        "attribute_ttl": catalog.attribute_ttl,
        "event_ttl": catalog.event_ttl,
        "step": EVENT_EXPIRY_STEP,
        "cap": catalog.max_events_per_name,
        "host": HOST,
        "partner": partner_id,
        "consent_max_age": CONSENT_MAX_AGE,
    }


def declare_traits(db: duckdb.DuckDBPyConnection, catalog: TraitCatalog) -> None:
    """The catalog's declared traits as a table (``TRAIT_DEFS``: name, kind, ttl)."""
    db.execute(
        f"CREATE OR REPLACE TEMP TABLE {TRAIT_DEFS} (name VARCHAR, kind VARCHAR, ttl DOUBLE)"
    )
    declared = [(t.name, t.kind.value, t.ttl_seconds) for t in catalog.traits.values()]
    if declared:
        db.executemany(f"INSERT INTO {TRAIT_DEFS} VALUES (?, ?, ?)", declared)


def _run(db: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> Any:
    """``sql`` with the parameters it names."""
    return db.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql})


@dataclass(slots=True)
class _Staged:
    """What staging keeps in Python: each file's source, and the lines SQL never sees (not
    UTF-8, or a CSV row with more or fewer cells than the header), refused by their reason;
    ``lines``: lines counted (blank ones left out); ``seq``: where the next staged line's
    number starts (staged lines are numbered in file order, with gaps)."""

    sources: list[str] = field(default_factory=list)
    headers: list[list[str] | None] = field(default_factory=list)
    broken: list[tuple[int, int, Payload]] = field(default_factory=list)
    lines: int = 0
    seq: int = 0


Line = tuple[int, int, str | None, list[str] | None]
"""A staged line back in Python: ``(file, line, body, cells)``."""


class SqlIngest:
    """One partner's ingestion on the engine's connection (one run at a time)."""

    def __init__(self, db: duckdb.DuckDBPyConnection, catalog: TraitCatalog) -> None:
        self._db = db
        self._catalog = catalog
        self._checker = Checker(catalog)
        self._staged = _Staged()
        self._db.execute(STAGING)
        self._db.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {SHARED}")
        self._sync = self._db.cursor()
        self._sync.execute(
            f"CREATE OR REPLACE TABLE {SYNC_MAP} (partner_uid VARCHAR, dmp_uid VARCHAR)"
        )
        declare_traits(self._db, catalog)

    async def export_sync_map(self, store: Store, partner_id: str) -> None:
        """The partner's sync map from ``store`` (``sync_map.py``), on a connection of its
        own, so it runs while another thread stages lines."""
        await sync_map.export(store, partner_id, self._sync, SYNC_MAP, batch=SYNC_BATCH)

    def stage_path(self, path: Path, progress: Progress | None = None) -> bool:
        """Stage a JSON Lines file framed by the engine's reader (``lines.py``); False when
        it must be framed in Python (``stage``), nothing staged."""
        ends = line_ends(path, progress)
        if ends is None:
            return False
        db, staged = self._db, self._staged
        file = len(staged.sources)
        if ends.lines:
            compressed = path.name.lower().endswith(".gz")
            lines = read_csv_sql(compressed, ends.newline)
            # every line in (blank ones too, bodiless, to count them), numbered by the reader
            # in file order: no sort; a staged line's ``seq`` is its file's base plus its number.
            # A line opening an object is not blank: only the others are trimmed (a trim
            # copies the line)
            try:
                db.execute(
                    f"""INSERT INTO {LINES}
                    SELECT $file, line,
                        CASE WHEN starts_with(body, '{{') OR trim(body, '{BLANK}') <> ''
                             THEN body END,
                        NULL, $seq + line
                      FROM ({lines})""",
                    {"path": str(path), "file": file, "seq": staged.seq},
                )
            except duckdb.Error:  # not UTF-8, or a line the reader refuses
                db.execute(f"DELETE FROM {LINES} WHERE file = $file", {"file": file})
                return False
            read, count = db.execute(
                f"SELECT count(*), count(body) FROM {LINES} WHERE file = $file", {"file": file}
            ).fetchone() or (0, 0)
            if read != ends.lines:
                db.execute(f"DELETE FROM {LINES} WHERE file = $file", {"file": file})
                return False
            db.execute(f"DELETE FROM {LINES} WHERE file = $file AND body IS NULL", {"file": file})
            staged.lines += int(count)
            staged.seq += int(read) + 1
        staged.sources.append(str(path))
        staged.headers.append(None)
        db.execute(f"INSERT INTO {FILES} VALUES (?, ?, NULL)", [file, str(path)])
        return True

    def stage(self, batches: Iterable[Batch]) -> None:
        """Stage a file's lines (its batches from ``readers.read_batches``)."""
        staged = self._staged
        file = len(staged.sources)
        header: list[str] | None = None
        numbers: list[int] = []
        bodies: list[str | None] = []
        rows: list[list[str] | None] = []
        source = ""
        for batch in batches:
            source = batch.source
            for number, payload in batch.lines:
                staged.lines += 1
                if isinstance(payload, bytes):
                    try:
                        body = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        staged.broken.append((file, number, payload))
                        continue
                    numbers.append(number)
                    bodies.append(body)
                    rows.append(None)
                else:
                    if header is None:
                        header = [str(name) for name in payload if name is not None]
                    cells = list(payload.values())
                    if None in payload or list(payload) != header or None in cells:
                        staged.broken.append((file, number, payload))
                        continue
                    numbers.append(number)
                    bodies.append(None)
                    rows.append(cells)  # type: ignore[arg-type]
                if len(numbers) >= STAGE_ROWS:
                    self._insert(file, numbers, bodies, rows)
                    numbers, bodies, rows = [], [], []
        self._insert(file, numbers, bodies, rows)
        staged.sources.append(source)
        staged.headers.append(header)
        self._db.execute(f"INSERT INTO {FILES} VALUES (?, ?, ?)", [file, source, header])

    def _insert(
        self,
        file: int,
        numbers: list[int],
        bodies: list[str | None],
        rows: list[list[str] | None],
    ) -> None:
        if not numbers:
            return
        # staged lines are numbered in file order (those counted but refused leave gaps)
        values: dict[str, Any] = {
            "file": file,
            "numbers": numbers,
            "bodies": bodies,
            "seq": self._staged.seq,
        }
        self._staged.seq += len(numbers)
        cells = "NULL"
        if any(r is not None for r in rows):
            values["rows"], cells = rows, "unnest($rows::VARCHAR[][])"
        self._db.execute(
            f"INSERT INTO {LINES} SELECT $file, unnest($numbers::INTEGER[]), "
            f"unnest($bodies::VARCHAR[]), {cells}, $seq + unnest(range(len($numbers)))",
            values,
        )

    @property
    def staged(self) -> _Staged:
        return self._staged

    def run(self, partner_id: str, now: float) -> SqlOutcome:
        """Validate, resolve and merge what was staged, ``CHUNK_LINES`` lines at a time in
        file order; then write the profiles' tables in one transaction (once: deleting rows
        chunk after chunk would leave the file holding them). The refused and the unsynced
        lines come back for the key-value store."""
        params = _parameters(self._catalog, partner_id, now)
        outcome = SqlOutcome(self, partner_id, now)
        for statement in SYNC_IDS:
            self._db.execute(statement)
        db = self._db
        # file order is carried by (file, line) from here: the engine may reorder rows
        (ordered,) = db.execute(
            "SELECT current_setting('preserve_insertion_order')"
        ).fetchone() or (True,)
        db.execute("SET preserve_insertion_order = false")
        try:
            for start in range(0, self._staged.seq, CHUNK_LINES):
                self._run_chunk(params, start, start + CHUNK_LINES, outcome)
            # the lines and the last chunk's tables are read: their memory is the merge's
            for table in CHUNK_TABLES:
                db.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in FINAL:
                _run(db, statement, params)
        finally:
            db.execute(f"SET preserve_insertion_order = {bool(ordered)}")
        db.execute("BEGIN")
        try:
            for statement in WRITE:
                _run(db, statement, params)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        outcome.profiles, outcome.expired = self._db.execute(TOTALS).fetchone() or (0, 0)
        return outcome

    def close(self) -> None:
        """Drop the run's tables (the lines staged with them) and its database: the engine's
        connection lives on."""
        db = self._db
        tables = db.execute(
            "SELECT table_name FROM duckdb_tables() "
            "WHERE temporary AND starts_with(table_name, $1)",
            [PREFIX],
        ).fetchall()
        for (table,) in tables:
            db.execute(f"DROP TABLE {table}")
        self._sync.close()
        db.execute(f"DETACH DATABASE IF EXISTS {SHARED}")

    def _run_chunk(self, params: dict[str, Any], start: int, end: int, into: SqlOutcome) -> None:
        db = self._db
        params = {**params, "start": start, "end": end}
        for statement in [*PARSE, VERDICT_SQL, *RESOLVE, *MERGE, *KEEP]:
            _run(db, statement, params)
        db.execute(f"INSERT INTO {TOUCHED} SELECT DISTINCT pid FROM {ACCEPTED}")
        _run(db, LAPSED_SQL, params)
        accepted, values = _run(db, COUNTS, params).fetchone()
        into.accepted += int(accepted)
        into.values += int(values)
        into.invalid += _run(
            db,
            f"""SELECT v.file, v.line, l.body, l.cells FROM {VERDICT} v
                  JOIN {CHUNK} l USING (file, line) WHERE NOT v.valid ORDER BY 1, 2""",
            params,
        ).fetchall()
        into.refused += _run(
            db,
            f"""SELECT r.file, r.line, l.body, l.cells FROM {RESOLVED} r
                  JOIN {CHUNK} l USING (file, line)
                 WHERE r.pid IN (SELECT pid FROM {REFUSING}) ORDER BY 1, 2""",
            params,
        ).fetchall()
        into.unsynced += _run(
            db,
            f"""SELECT r.file, r.line, l.body, l.cells FROM {RESOLVED} r
                  JOIN {CHUNK} l USING (file, line) WHERE r.pid IS NULL ORDER BY 1, 2""",
            params,
        ).fetchall()

    # --- lines back to Python: their payload, their reason, their record -------------------

    def payload(self, file: int, body: str | None, cells: list[str] | None) -> Payload:
        """The line as ``readers.read_batches`` gives it (a line the engine framed lacks its
        line ending, which neither a reject's text nor a record keeps)."""
        if body is not None:
            return body.encode("utf-8")
        header = self._staged.headers[file] or []
        return dict(zip(header, cells or [], strict=True))

    def check(self, payload: Payload, now: float) -> Record:
        """The record of a line, by the per-record rules (raises RecordError)."""
        if isinstance(payload, bytes):
            return self._checker.parse_json(payload, now)
        return self._checker.parse_row(payload, now)


@dataclass(slots=True)
class SqlOutcome:
    """A run's counts, and the lines the key-value side still needs: refused by a rule
    (``invalid``), refused by consent (``refused``), waiting for their sync (``unsynced``),
    each in file order."""

    ingest: SqlIngest
    partner_id: str
    now: float
    accepted: int = 0
    profiles: int = 0
    expired: int = 0
    values: int = 0
    invalid: list[Line] = field(default_factory=list)
    refused: list[Line] = field(default_factory=list)
    unsynced: list[Line] = field(default_factory=list)

    def rejects(self) -> list[Reject]:
        """Every refused line with the per-record path's reason, in file order."""
        ingest, staged = self.ingest, self.ingest.staged
        found: list[tuple[int, int, Reject]] = []
        lines = [(f, n, ingest.payload(f, b, c)) for f, n, b, c in self.invalid]
        for file, number, payload in [*lines, *staged.broken]:
            try:
                ingest.check(payload, self.now)
            except RecordError as exc:
                refusal = reject(staged.sources[file], number, str(exc), payload)
                found.append((file, number, refusal))
                continue
            raise AssertionError(f"line {number}: refused in SQL, valid per record")
        reason = CONSENT_REASON.format(partner=self.partner_id)
        for file, number, body, cells in self.refused:
            payload = ingest.payload(file, body, cells)
            found.append((file, number, reject(staged.sources[file], number, reason, payload)))
        found.sort(key=lambda item: (item[0], item[1]))
        return [item[2] for item in found]

    def waiting(self) -> list[Record]:
        """The records whose partner uid is not synced, in file order."""
        ingest = self.ingest
        return [ingest.check(ingest.payload(f, b, c), self.now) for f, _, b, c in self.unsynced]


async def ingest_files(
    db: duckdb.DuckDBPyConnection,
    store: Store,
    pending: PendingRecords,
    partner_id: str,
    files: Sequence[Path | Iterable[Batch]],
    catalog: TraitCatalog,
    *,
    fmt: Format | None = None,
    progress: Progress | None = None,
    clock: Clock = time.time,
    keep_rejects: bool = False,
    memory_limit_mb: int = MEMORY_LIMIT_MB,
) -> IngestReport:
    """Ingest ``files`` (paths, of format ``fmt`` or named by it, or batches already read) of
    ``partner_id`` into the engine's profiles on ``db``; park the records of unsynced uids in
    ``pending`` (and apply those whose sync was stored meanwhile, as the per-record path
    does). Counts as ``Ingestor.ingest`` counts. A JSON Lines path is framed by the engine
    when it can be (``lines.py``), else by ``readers.read_batches``, as CSV and TSV are.
    ``memory_limit_mb``: the engine's memory limit, which the whole process keeps within: the
    engine's buffers take ``ENGINE_SHARE`` of it meanwhile."""
    db.execute(f"SET memory_limit = '{int(memory_limit_mb * ENGINE_SHARE)}MB'")
    ingest = SqlIngest(db, catalog)
    try:
        report = await _ingest(ingest, store, pending, partner_id, files, fmt, progress, clock)
    finally:
        ingest.close()
        db.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
    if not keep_rejects:
        report.rejects = []
    return report


async def _ingest(
    ingest: SqlIngest,
    store: Store,
    pending: PendingRecords,
    partner_id: str,
    files: Sequence[Path | Iterable[Batch]],
    fmt: Format | None,
    progress: Progress | None,
    clock: Clock,
) -> IngestReport:
    def stage() -> None:
        for file in files:
            if not isinstance(file, Path):
                ingest.stage(file)
                continue
            kind = fmt or detect_format(file) or "jsonl"
            if kind == "jsonl" and ingest.stage_path(file, progress):
                continue
            ingest.stage(read_batches(file, kind, STAGE_ROWS, progress))

    # the files staged in a thread (the engine's reader runs without Python's lock) while the
    # sync map is exported here
    staging = asyncio.create_task(asyncio.to_thread(stage))
    try:
        await ingest.export_sync_map(store, partner_id)
    except BaseException:
        await asyncio.wait([staging])
        raise
    await staging
    outcome = ingest.run(partner_id, clock())
    rejects = outcome.rejects()
    report = IngestReport(
        records=ingest.staged.lines,
        accepted=outcome.accepted,
        pending=len(outcome.unsynced),
        rejected=0,
        profiles=outcome.profiles,
        expired_events=outcome.expired,
        values=outcome.values,
    )
    for refusal in rejects:
        report.refused(reject_code(refusal.reason))
    report.rejects = rejects
    waiting = outcome.waiting()
    for i in range(0, len(waiting), PARK_BATCH):
        chunk = waiting[i : i + PARK_BATCH]
        await pending.add(partner_id, chunk)
        report.resolved += await pending.recheck(partner_id, list({r.uid: None for r in chunk}))
    return report
