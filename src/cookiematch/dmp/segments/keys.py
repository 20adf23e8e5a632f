"""Store keys of segments and exports. No operation spans two keys (Redis Cluster safe).

    dmp:{<dmp uid>}:s                    field map  segment id -> joined at (unix s, ASCII)
    dmps:{<segment>:<shard>}:m           field map  dmp uid -> joined at   (member index)
    dmps:{<segment>}:sketch              plain      theta sketch of the segment (recompute)
    dmps:{exposure:<kind>:<campaign>}:sketch   plain  same, for impression-pixel audiences
    {dmps}:recompute                     plain      JSON summary of the last full recompute
    {dmps}:recompute:lease               plain      the worker running the scheduled recompute
                                                    (TTL: a lease, ``storage/lease.py``)
    dmpx:{<segment>:<dest>:<shard>}:sent field map  dmp uid -> destination id last sent
    dmpx:{<segment>:<dest>}:last         plain      JSON delivery report of the last export

The member index and the export state are split into ``SHARDS`` maps by a hash of the DMP
uid, so that a large segment spreads over a cluster and one map stays a manageable size.
"""

from __future__ import annotations

import zlib

SHARDS = 256
RECOMPUTE_KEY = "{dmps}:recompute"
RECOMPUTE_LEASE_KEY = "{dmps}:recompute:lease"


def shard_of(dmp_uid: str) -> int:
    return zlib.crc32(dmp_uid.encode()) % SHARDS


def membership_key(dmp_uid: str) -> str:
    return f"dmp:{{{dmp_uid}}}:s"


def member_index_key(segment: str, shard: int) -> str:
    return f"dmps:{{{segment}:{shard:03d}}}:m"


def sketch_key(audience: str) -> str:
    return f"dmps:{{{audience}}}:sketch"


def sent_key(segment: str, destination: str, shard: int) -> str:
    return f"dmpx:{{{segment}:{destination}:{shard:03d}}}:sent"


def last_export_key(segment: str, destination: str) -> str:
    return f"dmpx:{{{segment}:{destination}}}:last"
