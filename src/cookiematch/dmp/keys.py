"""Store keys of the DMP. Everything about one browser shares its ``{dmp uid}`` hash tag, so a
profile lives on one cluster node; a partner ID's reverse entry is tagged by itself.

    dmp:{<dmp uid>}:p           field map  partner id -> PartnerMatch
    dmp:{<dmp uid>}:e           field map  "<event>|<campaign>|<site>|<creative>" -> EventTally
    dmp:{<dmp uid>}:kv          field map  "<partner>.<key>" -> value (in-band data)
    dmp:{<dmp uid>}:t           field map  "a|<name>" -> JSON value (attribute, per-trait TTL);
                                           "e|<name>|<ts>" -> partner id (ingested event)
    dmp:pend:{<partner>:<uid>}  field map  record digest -> a record waiting for the sync
    dmp:idem:{<partner>:<key>}  plain      -> the answer of an HTTP batch (Idempotency-Key)
    {dmp:pull}:<partner>        plain      -> the pull cursor of a partner's endpoint
    dmp:pid:{<partner>:<uid>}   plain      -> ReverseMatch (partner uid -> dmp uid)
    {dmp:funnel}:<worker>       plain      -> one worker's funnel counters
"""

from __future__ import annotations

from cookiematch.protocol.query import encode_component

FUNNEL_PREFIX = "{dmp:funnel}:"


def partners_key(dmp_uid: str) -> str:
    return f"dmp:{{{dmp_uid}}}:p"


def events_key(dmp_uid: str) -> str:
    return f"dmp:{{{dmp_uid}}}:e"


def inband_key(dmp_uid: str) -> str:
    return f"dmp:{{{dmp_uid}}}:kv"


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


def funnel_key(worker: str) -> str:
    return FUNNEL_PREFIX + worker
