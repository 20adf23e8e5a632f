"""Staged trait updates (``dmp/traits/staging.py``) applied on DuckDB in SQL, with the merge
and the write of the ingestion (``ingest_sql.final_sql``, ``write_sql``).

    staged files (their JSON) ──▶ one row per update (``seq``: file, then place in it)
        ──▶ erasures: the browser's traits deleted, what was staged before it left out
        ──▶ attribute operations (removes, then sets), events ──▶ the ingestion's merge

The files' contents reach the engine as they are (each decoded in Python first, so one that
does not is set aside: ``staged.apply_staged``); the engine parses them: no step of Python per
update. Then, as the per-profile merge (``staged.apply_updates``) does: each (browser, name)'s
last operation wins (an update's removes before its sets), an attribute set living its trait's
TTL from the update's time; events kept by (name, ts) with the later lapse, cut to the newest
``max_events_per_name`` of each name; events already lapsed are kept as the per-profile merge
keeps them (a rule never sees them); a browser's profile lapses with the last of its data. A
browser the engine does not know and to which no trait is left gets no row. One transaction:
applied again, the same files change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np

from cookiematch.dmp.analytics.ingest_sql import (
    CUT,
    KEPT_EVENTS,
    LAPSES,
    OWN_TIME,
    PROFILE_IDS,
    RUN_ATTRS,
    RUN_EVENTS,
    RUN_OPS,
    TRAIT_DEFS,
    WRITTEN_EVENTS,
    declare_traits,
    event_expiry,
    final_sql,
    write_sql,
)
from cookiematch.dmp.analytics.tables import ATTRIBUTES, EVENTS
from cookiematch.dmp.traits.schema import EVENT_EXPIRY_STEP, TraitCatalog

FILES, UPDATES, ERASED, LIVE = "stg_files", "stg_updates", "stg_erased", "stg_live"

# each update's parts (``StagedUpdate``, an array): minified JSON, an empty list or object
# written ``[]``, ``{}``; an erasure's flag may be left out
PARSE = f"""CREATE OR REPLACE TEMP TABLE {UPDATES} AS
SELECT (file::BIGINT << 32) + i AS seq, p[1]->>'$' AS uid, p[2]::DOUBLE AS set_at,
    p[3] AS attrs, p[4] AS remove, p[5] AS events, coalesce(p[6]::BOOLEAN, false) AS erase
  FROM (SELECT file, i, json_extract(u, ['$[0]', '$[2]', '$[3]', '$[4]', '$[5]', '$[6]']) AS p
          FROM (SELECT file, unnest(range(len(l))) AS i, unnest(l) AS u
                  FROM (SELECT file, from_json(body, '["JSON"]') AS l FROM {FILES})))"""

PREPARE = [
    f"""CREATE OR REPLACE TEMP TABLE {PROFILE_IDS} AS
    SELECT profile, (row_number() OVER ())::INTEGER AS pid
      FROM (SELECT DISTINCT uid AS profile FROM {UPDATES})""",
    # each erased browser's last erasure: what was staged before it is left out
    f"""CREATE OR REPLACE TEMP TABLE {ERASED} AS
    SELECT p.pid, p.profile, max(u.seq) AS seq
      FROM {UPDATES} u JOIN {PROFILE_IDS} p ON p.profile = u.uid
     WHERE u.erase GROUP BY ALL""",
    f"""CREATE OR REPLACE TEMP TABLE {LIVE} AS
    SELECT p.pid, u.seq, u.set_at, u.attrs, u.remove, u.events
      FROM {UPDATES} u JOIN {PROFILE_IDS} p ON p.profile = u.uid
      LEFT JOIN {ERASED} e ON e.pid = p.pid
     WHERE NOT u.erase AND (e.seq IS NULL OR u.seq > e.seq)""",
    f"DROP TABLE {UPDATES}",
    # an update's removes (NULL) before its sets (never NULL: a null does not decode). An
    # object naming a key twice (never written so; decoded, the last wins) is no map: its
    # entries are read one by one, the last of each key kept
    f"""CREATE OR REPLACE TEMP TABLE {RUN_OPS} AS
    WITH sets AS (
        SELECT pid, seq, set_at, attrs, from_json(attrs, '"MAP(VARCHAR, JSON)"') AS m
          FROM {LIVE} WHERE attrs <> '{{}}')
    SELECT pid, unnest(from_json(remove, '["VARCHAR"]')) AS name, seq << 1 AS seq,
        NULL::JSON AS value, set_at
      FROM {LIVE} WHERE remove <> '[]'
    UNION ALL
    SELECT pid, unnest(map_keys(m)), (seq << 1) + 1, unnest(map_values(m)), set_at
      FROM sets WHERE m IS NOT NULL
    UNION ALL
    SELECT s.pid, e.key, (s.seq << 1) + 1, arg_max(e.value, e.id), s.set_at
      FROM sets s, json_each(s.attrs) e WHERE s.m IS NULL
     GROUP BY s.pid, s.seq, s.set_at, e.key""",
    f"""CREATE OR REPLACE TEMP TABLE {RUN_EVENTS} AS
    SELECT e.pid, e.name, e.ts, {event_expiry("e.ts", "t.ttl")} AS expires_at
      FROM (SELECT pid, e[1] AS name, e[2]::DOUBLE AS ts
              FROM (SELECT pid, unnest(from_json(events, '[["VARCHAR"]]')) AS e
                      FROM {LIVE} WHERE events <> '[]')) e
      LEFT JOIN {TRAIT_DEFS} t USING (name)""",
    f"DROP TABLE {LIVE}",
]

ERASE = [
    f"DELETE FROM {table} WHERE profile IN (SELECT profile FROM {ERASED})"
    for table in (ATTRIBUTES, EVENTS)
]
"""The erased browsers' traits, deleted before the merge reads the events held."""

FINAL, WRITE = final_sql(OWN_TIME), write_sql(OWN_TIME)

TEMPORARY = (FILES, UPDATES, ERASED, LIVE, *(PROFILE_IDS, TRAIT_DEFS, RUN_OPS, RUN_EVENTS),
    *(RUN_ATTRS, WRITTEN_EVENTS, KEPT_EVENTS, CUT, LAPSES))  # fmt: skip
"""The tables of an apply: its own, then the ingestion's merge's."""


def _parameters(catalog: TraitCatalog) -> dict[str, Any]:
    return {
        "attribute_ttl": catalog.attribute_ttl,
        "event_ttl": catalog.event_ttl,
        "step": EVENT_EXPIRY_STEP,
        "cap": catalog.max_events_per_name,
        "keep_after": float("-inf"),  # every event written, lapsed or not
    }


def apply_in_sql(
    db: duckdb.DuckDBPyConnection, files: Sequence[bytes], catalog: TraitCatalog
) -> None:
    """Apply staged files (their contents, each one that decodes, in staging order) to the
    profiles' tables on ``db``, in one transaction."""
    if not files:
        return
    params = _parameters(catalog)
    bodies = np.array([body.decode("utf-8") for body in files], dtype=object)
    try:
        declare_traits(db, catalog)
        db.register("stg_bodies", {"file": np.arange(len(files)), "body": bodies})
        try:
            db.execute(f"CREATE OR REPLACE TEMP TABLE {FILES} AS SELECT * FROM stg_bodies")
        finally:
            db.unregister("stg_bodies")
        db.execute("BEGIN")
        try:
            for statement in [PARSE, f"DROP TABLE {FILES}", *PREPARE, *ERASE, *FINAL, *WRITE]:
                db.execute(statement, {k: v for k, v in params.items() if f"${k}" in statement})
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        for table in TEMPORARY:
            db.execute(f"DROP TABLE IF EXISTS {table}")
