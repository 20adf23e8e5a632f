"""Staged trait updates (``dmp/traits/staging.py``) applied on DuckDB in SQL, with the merge
and the write of the ingestion (``ingest_sql.final_sql``, ``write_sql``).

    updates (decoded) ──▶ columns, one row per update ──▶ a temporary table (``seq``: order)
        ──▶ erasures: the browser's traits deleted, what was staged before it left out
        ──▶ attribute operations (removes, then sets), events ──▶ the ingestion's merge

The updates are decoded in Python (``msgspec``: a file that does not decode is set aside
before), flattened into a few columns (an update's attributes as one JSON object) and bound as
lists in one insert. Then, as the per-profile merge (``staged.apply_updates``) does: each
(browser, name)'s last operation wins (an update's removes before its sets), an attribute set
living its trait's TTL from the update's time; events kept by (name, ts) with the later lapse,
cut to the newest ``max_events_per_name`` of each name; events already lapsed are kept as the
per-profile merge keeps them (a rule never sees them); a browser's profile lapses with the
last of its data. A browser the engine does not know and to which no trait is left gets no
row. One transaction: applied again, the same updates change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import msgspec

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
from cookiematch.dmp.traits.staging import StagedUpdate

UPDATES, ERASED, LIVE = "stg_updates", "stg_erased", "stg_live"

STAGE = f"""INSERT INTO {UPDATES}
SELECT unnest($uid::VARCHAR[]), unnest(range(len($uid))), unnest($at::DOUBLE[]),
    unnest($attrs::VARCHAR[])::JSON, unnest($remove::VARCHAR[][]),
    unnest($names::VARCHAR[][]), unnest($stamps::DOUBLE[][]), unnest($erase::BOOLEAN[])"""

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
    SELECT p.pid, u.seq, u.set_at, u.attrs, u.remove, u.names, u.stamps
      FROM {UPDATES} u JOIN {PROFILE_IDS} p ON p.profile = u.uid
      LEFT JOIN {ERASED} e ON e.pid = p.pid
     WHERE NOT u.erase AND (e.seq IS NULL OR u.seq > e.seq)""",
    f"DROP TABLE {UPDATES}",
    # an update's removes before its sets; a set is never NULL (a JSON null is a value)
    f"""CREATE OR REPLACE TEMP TABLE {RUN_OPS} AS
    SELECT pid, unnest(remove) AS name, seq << 1 AS seq, NULL::JSON AS value, set_at
      FROM {LIVE} WHERE len(remove) > 0
    UNION ALL
    SELECT l.pid, e.key, (l.seq << 1) + 1, e.value, l.set_at
      FROM {LIVE} l, json_each(l.attrs) e WHERE l.attrs IS NOT NULL""",
    f"""CREATE OR REPLACE TEMP TABLE {RUN_EVENTS} AS
    SELECT e.pid, e.name, e.ts, {event_expiry("e.ts", "t.ttl")} AS expires_at
      FROM (SELECT pid, unnest(names) AS name, unnest(stamps) AS ts
              FROM {LIVE} WHERE len(names) > 0) e
      LEFT JOIN {TRAIT_DEFS} t USING (name)""",
    f"DROP TABLE {LIVE}",
]

ERASE = [
    f"DELETE FROM {table} WHERE profile IN (SELECT profile FROM {ERASED})"
    for table in (ATTRIBUTES, EVENTS)
]
"""The erased browsers' traits, deleted before the merge reads the events held."""

FINAL, WRITE = final_sql(OWN_TIME), write_sql(OWN_TIME)

TEMPORARY = (UPDATES, ERASED, LIVE, *(PROFILE_IDS, TRAIT_DEFS, RUN_OPS, RUN_EVENTS),
    *(RUN_ATTRS, WRITTEN_EVENTS, KEPT_EVENTS, CUT, LAPSES))  # fmt: skip
"""The tables of an apply: its own, then the ingestion's merge's."""


def columns(updates: Sequence[StagedUpdate]) -> dict[str, list[Any]]:
    """The updates as ``STAGE`` binds them, one row each in order: an update's attributes as
    one JSON object (NULL: none), its events as two lists."""
    encode = msgspec.json.encode
    found: dict[str, list[Any]] = {
        k: [] for k in ("uid", "at", "attrs", "remove", "names", "stamps", "erase")
    }
    uid, at, attrs, remove = found["uid"], found["at"], found["attrs"], found["remove"]
    names, stamps, erase = found["names"], found["stamps"], found["erase"]
    for update in updates:
        uid.append(update.dmp_uid)
        at.append(update.at)
        attrs.append(encode(update.attributes).decode() if update.attributes else None)
        remove.append(update.remove)
        names.append([name for name, _ in update.events])
        stamps.append([float(ts) for _, ts in update.events])
        erase.append(update.erase)
    return found


def _parameters(catalog: TraitCatalog) -> dict[str, Any]:
    return {
        "attribute_ttl": catalog.attribute_ttl,
        "event_ttl": catalog.event_ttl,
        "step": EVENT_EXPIRY_STEP,
        "cap": catalog.max_events_per_name,
        "keep_after": float("-inf"),  # every event written, lapsed or not
    }


def apply_in_sql(
    db: duckdb.DuckDBPyConnection, updates: Sequence[StagedUpdate], catalog: TraitCatalog
) -> None:
    """Apply ``updates`` (in staging order) to the profiles' tables on ``db``, in one
    transaction."""
    if not updates:
        return
    params = _parameters(catalog)
    db.execute(
        f"""CREATE OR REPLACE TEMP TABLE {UPDATES} (uid VARCHAR, seq BIGINT, set_at DOUBLE,
        attrs JSON, remove VARCHAR[], names VARCHAR[], stamps DOUBLE[], erase BOOLEAN)"""
    )
    try:
        declare_traits(db, catalog)
        db.execute(STAGE, columns(updates))
        db.execute("BEGIN")
        try:
            for statement in [*PREPARE, *ERASE, *FINAL, *WRITE]:
                db.execute(statement, {k: v for k, v in params.items() if f"${k}" in statement})
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        for table in TEMPORARY:
            db.execute(f"DROP TABLE IF EXISTS {table}")
