"""The match tag's common cases read in one pass: a cookie match with extras, and with a
hosted match.

``read_tag(query, hosted)`` answers ``(google_nid, extras, google_hm, google_cm)`` for a query
that

- :func:`~cookiematch.protocol.query.parse_query` accepts (the same strict rules: size,
  percent-encoding, UTF-8, control characters; only an ASCII query is read here),
- :func:`~cookiematch.protocol.matchtag.parse_match_tag` accepts with one ``google_nid``,
- asks for ``google_cm`` and for no other operation nor the cookie test (no ``google_ula``,
  ``google_push``, ``google_tc``; no ``google_hm`` either unless ``hosted``, and then at
  most one, its value as ``parse_match_tag`` reads it: percent-decoded, ``""`` without ``=``,
  None when absent; whether it decodes is the exchange's to say; with it ``google_cm`` is
  optional, the last item says whether it was there),
- carries no privacy parameter (``gdpr``, ``gdpr_consent``, ``us_privacy``, ``gpp``,
  ``gpp_sid``: a signal the policy must read),
- and whose extras fit ``MAX_EXTRAS_BYTES`` (none is dropped);

and None for every other query, which the general path (``parse_query``, ``parse_match_tag``)
reads and answers, errors included. ``extras`` are the extra parameters in order, each
encoded once as ``encode_param`` writes it: what the 1 KiB check counts and what the
redirect carries. ``google_sc``/``google_no_sc`` and unknown ``google_`` parameters are
dropped, as ``parse_match_tag`` drops them (they matter only to a browser without a cookie).
``read_common_tag(query)`` is the cookie match alone (what the edge answers): ``(google_nid,
extras)``.
"""

from __future__ import annotations

from cookiematch.errors import QueryError
from cookiematch.protocol.matchtag import MAX_EXTRAS_BYTES
from cookiematch.protocol.privacy import PRIVACY_PARAMS
from cookiematch.protocol.query import (
    MAX_QUERY_BYTES,
    bad_percent,
    decode_component,
    encode_component,
)

__all__ = ["OTHER_OPERATIONS", "read_common_tag", "read_tag"]

OTHER_OPERATIONS = frozenset({"google_ula", "google_hm", "google_push", "google_tc"})
"""Operations a common-case match tag does not ask for (it is answered by the general path)."""
_PRIVACY = frozenset(PRIVACY_PARAMS)


def read_common_tag(query: str) -> tuple[str, list[str]] | None:
    """``(google_nid, encoded extras)`` of a common-case cookie match; None otherwise."""
    tag = read_tag(query, False)
    return None if tag is None else (tag[0], tag[1])


def read_tag(query: str, hosted: bool) -> tuple[str, list[str], str | None, bool] | None:
    """``(google_nid, encoded extras, google_hm, google_cm)`` of a common-case match tag
    (``google_hm`` None: none, or not ``hosted``); None otherwise."""
    if len(query) > MAX_QUERY_BYTES or not (query.isascii() and query.isprintable()):
        return None  # too long, control characters, or not ASCII: the general path decides
    slow = "%" in query
    if slow and bad_percent(query):
        return None
    slow = slow or "+" in query
    nid: str | None = None
    hm: str | None = None
    cookie_match = False
    extras: list[str] = []
    size = -1  # the '&' separators
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        if not name:
            continue
        if slow:
            try:
                if "%" in name or "+" in name:
                    name = decode_component(name)
                if "%" in value or "+" in value:
                    value = decode_component(value)
            except (UnicodeDecodeError, QueryError):
                return None
        if name.startswith("google_"):
            if name == "google_nid":
                if nid is not None or not value:
                    return None
                nid = value
            elif name == "google_cm":
                cookie_match = True
            elif name == "google_hm" and hosted:
                if hm is not None:
                    return None  # duplicated: status 2, the general path's
                hm = value
            elif name in OTHER_OPERATIONS:
                return None
            continue
        if name in _PRIVACY:
            return None
        if eq:
            encoded = f"{encode_component(name)}={encode_component(value)}"
        else:
            encoded = encode_component(name)
        size += 1 + len(encoded)
        if size > MAX_EXTRAS_BYTES:
            return None
        extras.append(encoded)
    if nid is None or not (cookie_match or hm is not None):
        return None
    return nid, extras, hm, cookie_match
