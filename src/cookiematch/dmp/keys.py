"""Store keys of the DMP. Everything about one browser shares its ``{dmp uid}`` hash tag, so a
profile lives on one cluster node; a partner ID's reverse entry is tagged by itself.

    dmp:{<dmp uid>}:p           field map  partner id -> PartnerMatch
    dmp:{<dmp uid>}:e           field map  "<event>|<campaign>|<site>|<creative>" -> EventTally
    dmp:{<dmp uid>}:kv          field map  "<partner>.<key>" -> value (in-band data)
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


def funnel_key(worker: str) -> str:
    return FUNNEL_PREFIX + worker
