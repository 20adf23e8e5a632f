"""A partner's sync map, exported from the key-value store for the engine: every live reverse
entry ``dmp:pid:{<partner>:<uid>}`` (``dmp/keys.py``) as ``(partner uid, DMP uid)``.

The key-value store stays the source of truth (callbacks write it); ingestion on the engine
resolves partner uids by a join against this snapshot, taken once per run, where the
per-record path asks the store (``dmp/ingest/resolver.py``). The store's pages
(``Store.scan_pages``) reach the engine as they are read, raw ``(key, value)`` rows handed over
as arrays of the page's own objects (no step of Python per entry), and one statement decodes
them all at the end: the partner uid percent-decoded from the key, the DMP uid from the value
(``ReverseMatch``: a JSON array of a string and a finite number, as the resolver's decoder
takes it). Entries that do not decode are left out, as the resolver leaves them out.
"""

from __future__ import annotations

import duckdb
import numpy as np

from cookiematch.dmp import keys
from cookiematch.storage.base import Page, Store

SCAN_BATCH = 50_000  # entries read from the store per page


def reverse_prefix(partner_id: str) -> str:
    """The prefix of every reverse entry of ``partner_id``."""
    return keys.reverse_key(partner_id, "").removesuffix("}")


def decode_sql(raw: str, into: str) -> str:
    """SQL: the table ``into`` (partner_uid, dmp_uid) of the decodable entries of ``raw``
    (key, value); ``$prefix``: the partner's ``reverse_prefix``. A value is parsed once for
    its two elements (minified JSON: a string's first character is its quote; a number is
    one whose text casts to a finite double); a key percent-decoded only where it holds a
    ``%``."""
    return f"""CREATE OR REPLACE TABLE {into} AS
    SELECT partner_uid, p[1]->>'$' AS dmp_uid
      FROM (SELECT CASE WHEN contains(k, '%') THEN TRY(url_decode(k)) ELSE k END AS partner_uid,
                   TRY(json_extract(decode(value), ['$[0]', '$[1]'])) AS p
              FROM (SELECT key[length($prefix) + 1:-2] AS k, value
                      FROM {raw} WHERE ends_with(key, '}}')))
     WHERE partner_uid IS NOT NULL AND starts_with(p[1], '"')
       AND isfinite(TRY_CAST(p[2]::VARCHAR AS DOUBLE))"""


def _columns(page: Page) -> dict[str, np.ndarray]:
    """A page as the engine scans it: a column of keys and one of values, the page's own
    objects (the engine reads each as a string or bytes, without Python per entry)."""
    rows = np.array(page, dtype=object)
    return {"key": rows[:, 0], "value": rows[:, 1]}


async def export(
    store: Store,
    partner_id: str,
    db: duckdb.DuckDBPyConnection,
    into: str,
    *,
    batch: int = SCAN_BATCH,
) -> None:
    """The partner's sync map into the table ``into`` (created, or replaced), through the
    connection ``db``: the store's pages as raw rows into ``<into>_raw``, decoded once at
    the end (the raw rows dropped)."""
    raw = f"{into}_raw"
    db.execute(f"CREATE OR REPLACE TABLE {raw} (key VARCHAR, value BLOB)")
    try:
        async for page in store.scan_pages(reverse_prefix(partner_id), batch=batch):
            db.register("ing_page", _columns(page))
            try:
                db.execute(f"INSERT INTO {raw} SELECT key, value FROM ing_page")
            finally:
                db.unregister("ing_page")
        db.execute(decode_sql(raw, into), {"prefix": reverse_prefix(partner_id)})
    finally:
        db.execute(f"DROP TABLE IF EXISTS {raw}")
