"""Store keys of the DMP. Everything about one browser shares its ``{dmp uid}`` hash tag, so a
profile lives on one cluster node; a partner ID's reverse entry is tagged by itself.

    dmp:{<dmp uid>}:p           field map  partner id -> PartnerMatch
    dmp:{<dmp uid>}:e           field map  "<event>|<campaign>|<site>|<creative>" -> EventTally
    dmp:{<dmp uid>}:kv          field map  "<partner>.<key>" -> value (in-band data)
    dmp:{<dmp uid>}:g           field map  "*" or partner id -> GDPR consent mark (consent.py)
    dmp:{<dmp uid>}:t           field map  "a|<name>" -> JSON value (attribute, per-trait TTL);
                                           "e|<name>|<ts>" -> partner id (ingested event)
    dmp:pend:{<partner>:<uid>}  field map  record digest -> a record waiting for the sync
    dmp:idem:{<partner>:<key>}  plain      -> the answer of an HTTP batch (Idempotency-Key)
    {dmp:pull}:<partner>        plain      -> the pull cursor of a partner's endpoint
    dmp:pid:{<partner>:<uid>}   plain      -> ReverseMatch (partner uid -> dmp uid)
    {dmp:funnel}                field map  process -> its funnel counters (funnel_log.py)
    {dmp:funnelsum}             plain      -> the funnel counters of processes gone, added up
    {dmp:funnelsum}:lease       plain      the process adding them up now (a lease)
    {dmp:funnelsum}:moved       plain      an earlier version's {dmp:funnel}:<process> keys
                                           (one a process) moved into {dmp:funnel}

Segments and exports; no operation spans two keys (Redis Cluster safe). Memberships and export
state expire (``dmp/lifetimes.py``); a sketch holds hashes, no ID:

    dmp:{<dmp uid>}:s                    field map  segment id -> joined at (unix s, ASCII)
    dmps:{<segment>}:sketch              plain      theta sketch of the segment (recompute)
    dmps:{exposure:<kind>:<campaign>}:sketch   plain  same, for impression-pixel audiences
    {dmps}:recompute                     plain      JSON summary of the last full recompute
    {dmps}:recompute:lease               plain      the worker running the scheduled recompute
                                                    (TTL: a lease, ``storage/lease.py``)
    {dmps}:recompute:run                 plain      JSON record of its last scheduled run
    {dmps}:overlap                       plain      JSON: every segment pair's overlap, counted
                                                    by the analytics engine's last recompute
    {dmp:runs}:<job>                     plain      JSON record of a job's last run: "pull:<p>",
                                                    "export:<segment>:<dest>" (dmp/schedule.py)
    {dmp:runs}:<job>:lease               plain      the worker running that job (a lease)
    {dmp:def}                            field map  "<kind>:<id>" -> a partner, segment or
                                                    destination changed through the admin API
                                                    (web/dmp/definitions.py)
    {dmp:def}:changed                    plain      a new random token after each change of
                                                    ``{dmp:def}`` (storage/change_watch.py)
    dmpx:{<segment>:<dest>:<shard>}:sent field map  dmp uid -> destination id last sent
    dmpx:{<segment>:<dest>}:gone         field map  destination id of an erased browser -> erased
                                                    at: removes the next export sends
    dmpx:{<segment>:<dest>}:last         plain      JSON delivery report of the last export
    dmpc:{<minute>:<shard>}:m            field map  dmp uid -> written at: the browsers whose
                                                    profile an online write changed in that
                                                    minute (change_marks.py; the analytics
                                                    engine reloads them)
    {dmpa}:lease                         plain      the process holding the analytics engine
                                                    open (a lease)

The export state is split into ``SHARDS`` maps by a hash of the DMP uid, so that a large
segment's spreads over a cluster and one map stays a manageable size. A segment's members are
listed by the analytics engine, which holds the memberships (``dmp/analytics/``); the store
keeps each browser's own map, which requests read.
"""

from __future__ import annotations

import zlib

from cookiematch.protocol.query import encode_component

FUNNEL_KEY = "{dmp:funnel}"
LEGACY_FUNNEL_PREFIX = "{dmp:funnel}:"  # an earlier version's keys, one a process
FUNNEL_TOTAL_KEY = "{dmp:funnelsum}"
FUNNEL_ROLLUP_LEASE = "{dmp:funnelsum}:lease"
FUNNEL_MOVED_KEY = "{dmp:funnelsum}:moved"
SHARDS = 256
PROFILE_MAPS = ("t", "p", "e", "g", "s", "kv")
"""Every map of a browser (``dmp:{<uid>}:<suffix>``): traits, syncs, exposures, consent
marks, segment memberships, in-band data."""
RECOMPUTE_KEY = "{dmps}:recompute"
RECOMPUTE_LEASE_KEY = "{dmps}:recompute:lease"
RECOMPUTE_RUN_KEY = "{dmps}:recompute:run"
OVERLAP_KEY = "{dmps}:overlap"
RUNS_PREFIX = "{dmp:runs}:"


def run_key(job: str) -> str:
    """The record of a scheduled job's last run (``dmp/schedule.py``)."""
    return f"{RUNS_PREFIX}{job}"


def job_lease_key(job: str) -> str:
    return f"{RUNS_PREFIX}{job}:lease"


def partners_key(dmp_uid: str) -> str:
    return f"dmp:{{{dmp_uid}}}:p"


def events_key(dmp_uid: str) -> str:
    return f"dmp:{{{dmp_uid}}}:e"


def inband_key(dmp_uid: str) -> str:
    return f"dmp:{{{dmp_uid}}}:kv"


def consent_key(dmp_uid: str) -> str:
    return f"dmp:{{{dmp_uid}}}:g"


def reverse_key(partner_id: str, partner_uid: str) -> str:
    """Percent-encoded so that a ``{`` or ``}`` in a partner's ID cannot move the hash tag."""
    return f"dmp:pid:{{{partner_id}:{encode_component(partner_uid)}}}"


def traits_key(dmp_uid: str) -> str:
    return f"dmp:{{{dmp_uid}}}:t"


def pending_key(partner_id: str, partner_uid: str) -> str:
    """Tagged like the reverse entry, so both live on one cluster node."""
    return f"dmp:pend:{{{partner_id}:{encode_component(partner_uid)}}}"


def idempotency_key(partner_id: str, key: str) -> str:
    return f"dmp:idem:{{{partner_id}:{encode_component(key)}}}"


def pull_cursor_key(partner_id: str) -> str:
    return f"{{dmp:pull}}:{partner_id}"


def shard_of(dmp_uid: str) -> int:
    return zlib.crc32(dmp_uid.encode()) % SHARDS


def change_mark_key(minute: int, shard: int) -> str:
    """The browsers changed online in ``minute`` (Unix minutes), in its ``shard``-th slice
    (``dmp/change_marks.py``)."""
    return f"dmpc:{{{minute}:{shard:02d}}}:m"


ANALYTICS_LEASE_KEY = "{dmpa}:lease"


def membership_key(dmp_uid: str) -> str:
    return f"dmp:{{{dmp_uid}}}:s"


def sketch_key(audience: str) -> str:
    return f"dmps:{{{audience}}}:sketch"


def sent_key(segment: str, destination: str, shard: int) -> str:
    return f"dmpx:{{{segment}:{destination}:{shard:03d}}}:sent"


def removals_key(segment: str, destination: str) -> str:
    return f"dmpx:{{{segment}:{destination}}}:gone"


def last_export_key(segment: str, destination: str) -> str:
    return f"dmpx:{{{segment}:{destination}}}:last"
