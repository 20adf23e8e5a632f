"""The engine's tables, and the live relations a compiled rule reads.

Stored (one row per value, ``expires_at`` in Unix seconds, NULL for never)::

    profiles     (id, expires_at)                      every browser the engine knows
    attributes   (profile, name, kind, text, num_int, num_float, flag, items,
                  set_at, expires_at)                  kind: string | int | float | bool | list;
                                                       the value in the column of its kind
    events       (profile, name, ts, expires_at)
    exposures    (profile, kind, campaign, site, creative, count, first_at, last_at,
                  expires_at)                          impression-pixel tallies
    syncs        (profile, partner, partner_uid, synced_at, expires_at)
    consent      (profile, party, decided_at, tc_last_updated, refused, expires_at)
    memberships  (profile, segment, joined_at, written_at)
                                                       what the key-value store holds
    exported     (destination, segment, profile, sent_id, sent_at)
                                                       what each destination was last sent
                                                       (``export_sql.py``); kept through a
                                                       full load of the profiles
    checkpoints  (name, done_at)                       when the engine last did something
                                                       (``refresh.py``: profiles loaded
                                                       through ``done_at``)

Live at ``now`` (temporary tables the engine fills before evaluating rules, ``LIVE_AT``): the
rows not lapsed, events deduplicated and cut to the newest ``max_events_per_name`` of each
name (as ``ProfileReader`` reads them); ``live_profiles`` is the population.
"""

from __future__ import annotations

PROFILES = "profiles"
ATTRIBUTES = "attributes"
EVENTS = "events"
EXPOSURES = "exposures"
SYNCS = "syncs"
CONSENT = "consent"
MEMBERSHIPS = "memberships"
CHECKPOINTS = "checkpoints"
EXPORTED = "exported"

LIVE_PROFILES = "live_profiles"
LIVE_ATTRIBUTES = "live_attributes"
LIVE_EVENTS = "live_events"
LIVE_EXPOSURES = "live_exposures"
LIVE_SYNCS = "live_syncs"

PROFILE_TABLES = (PROFILES, ATTRIBUTES, EVENTS, EXPOSURES, SYNCS, CONSENT, MEMBERSHIPS)
"""Every table holding a profile's rows (``profiles`` by ``id``, the others by ``profile``)."""

KIND_STRING, KIND_INT, KIND_FLOAT, KIND_BOOL, KIND_LIST = "string", "int", "float", "bool", "list"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {PROFILES} (id VARCHAR NOT NULL, expires_at DOUBLE);
CREATE TABLE IF NOT EXISTS {ATTRIBUTES} (
    profile VARCHAR NOT NULL, name VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    text VARCHAR, num_int BIGNUM, num_float DOUBLE, flag BOOLEAN, items VARCHAR[],
    set_at DOUBLE, expires_at DOUBLE);
CREATE TABLE IF NOT EXISTS {EVENTS} (
    profile VARCHAR NOT NULL, name VARCHAR NOT NULL, ts DOUBLE NOT NULL, expires_at DOUBLE);
CREATE TABLE IF NOT EXISTS {EXPOSURES} (
    profile VARCHAR NOT NULL, kind VARCHAR NOT NULL, campaign VARCHAR NOT NULL,
    site VARCHAR NOT NULL, creative VARCHAR NOT NULL, count HUGEINT NOT NULL,
    first_at DOUBLE, last_at DOUBLE, expires_at DOUBLE);
CREATE TABLE IF NOT EXISTS {SYNCS} (
    profile VARCHAR NOT NULL, partner VARCHAR NOT NULL, partner_uid VARCHAR NOT NULL,
    synced_at DOUBLE, expires_at DOUBLE);
CREATE TABLE IF NOT EXISTS {CONSENT} (
    profile VARCHAR NOT NULL, party VARCHAR NOT NULL, decided_at DOUBLE NOT NULL,
    tc_last_updated DOUBLE, refused BOOLEAN NOT NULL, expires_at DOUBLE);
CREATE TABLE IF NOT EXISTS {MEMBERSHIPS} (
    profile VARCHAR NOT NULL, segment VARCHAR NOT NULL, joined_at DOUBLE NOT NULL,
    written_at DOUBLE);
CREATE TABLE IF NOT EXISTS {EXPORTED} (
    destination VARCHAR NOT NULL, segment VARCHAR NOT NULL, profile VARCHAR NOT NULL,
    sent_id VARCHAR NOT NULL, sent_at DOUBLE NOT NULL);
CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (name VARCHAR PRIMARY KEY, done_at DOUBLE NOT NULL);
"""

_LIVE = "(expires_at IS NULL OR expires_at > $now)"

LIVE_AT = [
    f"CREATE OR REPLACE TEMP TABLE {LIVE_PROFILES} AS SELECT id FROM {PROFILES} WHERE {_LIVE}",
    f"CREATE OR REPLACE TEMP TABLE {LIVE_ATTRIBUTES} AS "
    f"SELECT profile, name, kind, text, num_int, num_float, flag, items FROM {ATTRIBUTES} "
    f"WHERE {_LIVE}",
    f"CREATE OR REPLACE TEMP TABLE {LIVE_EVENTS} AS "
    f"SELECT profile, name, ts FROM (SELECT DISTINCT profile, name, ts FROM {EVENTS} "
    f"WHERE {_LIVE}) "
    "QUALIFY row_number() OVER (PARTITION BY profile, name ORDER BY ts DESC) <= $max_events",
    f"CREATE OR REPLACE TEMP TABLE {LIVE_EXPOSURES} AS "
    f"SELECT profile, kind, campaign, count FROM {EXPOSURES} WHERE {_LIVE}",
    f"CREATE OR REPLACE TEMP TABLE {LIVE_SYNCS} AS "
    f"SELECT profile, partner FROM {SYNCS} WHERE {_LIVE}",
]
"""Statements filling the live relations; parameters ``$now`` and ``$max_events``."""
