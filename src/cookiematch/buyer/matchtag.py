"""When to show the exchange's match tag, and the URLs the buyer sends browsers to.

The document makes the buyer responsible for frequency capping: serve the match tag only when
the match table has no entry for the user, or the entry is stale (older than 14 days by
default). :func:`decide_match_tag` is that rule as a pure function.

Every URL toward the exchange is built here from the configured ``exchange_url`` and
re-encoded parameters; nothing from a request is copied into it unencoded.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from cookiematch.buyer.ids import format_uid
from cookiematch.buyer.matchtable import MatchEntry
from cookiematch.protocol.query import QueryParam, encode_query


class TagReason(enum.StrEnum):
    """Why the match tag is, or is not, served (a ``StrEnum``: hashed as its text, in C, where
    ``/bid`` counts it)."""

    NO_ENTRY = "no_entry"  # serve
    STALE = "stale"  # serve
    FRESH = "fresh"  # do not serve
    HOSTED = "hosted"  # do not serve: the exchange holds this buyer's data for the user
    PRIVACY = "privacy"  # do not serve: the privacy policy refuses what a match is for
    OPTED_OUT = "opted_out"  # do not serve: the browser opted out at the buyer (its /optout)


class MatchTagDecision(msgspec.Struct, frozen=True):
    reason: TagReason
    age_seconds: float | None = None

    @property
    def serve(self) -> bool:
        reason = self.reason
        return reason is _NO_ENTRY or reason is _STALE


_NO_ENTRY, _STALE = TagReason.NO_ENTRY, TagReason.STALE
_NO_ENTRY_DECISION = MatchTagDecision(TagReason.NO_ENTRY)
_HOSTED_DECISION = MatchTagDecision(TagReason.HOSTED)
PRIVACY_DECISION = MatchTagDecision(TagReason.PRIVACY)
"""No match tag: the buyer may not keep its cookie for the browser, or not use a match."""
OPTED_OUT_DECISION = MatchTagDecision(TagReason.OPTED_OUT)
"""No match tag: the browser's cookie says it opted out at the buyer."""


def decide_match_tag(
    entry: MatchEntry | None, now: float, stale_after_seconds: float, *, hosted: bool = False
) -> MatchTagDecision:
    """Serve the tag iff there is no entry or it is at least ``stale_after_seconds`` old.

    ``hosted``: the bid request carried this buyer's hosted match data. Without an entry of
    its own, the buyer trusts it (the exchange introduced the match) and does not re-match.
    """
    if entry is None:
        return _HOSTED_DECISION if hosted else _NO_ENTRY_DECISION
    age = entry.age(now)
    if age >= stale_after_seconds:
        return MatchTagDecision(TagReason.STALE, age)
    return MatchTagDecision(TagReason.FRESH, age)


@dataclass(frozen=True, slots=True)
class ExchangeEndpoint:
    """The exchange's ``/pixel`` URL (absolute, configured) and this buyer's network ID."""

    url: str
    nid: str

    def _with(self, params: list[QueryParam]) -> str:
        separator = "&" if "?" in self.url else "?"
        if self.url.endswith(("?", "&")):
            separator = ""
        return f"{self.url}{separator}{encode_query(params)}"

    def match_tag_url(
        self, hosted_uid: bytes | None = None, extras: Sequence[QueryParam] = ()
    ) -> str:
        """``exchange_url?google_nid=<nid>&google_cm`` (+ ``&google_hm=<uid>``), then
        ``extras`` (the privacy parameters, which the exchange passes on to ``/match``)."""
        params = [QueryParam("google_nid", self.nid), QueryParam("google_cm", None)]
        if hosted_uid is not None:
            params.append(QueryParam("google_hm", format_uid(hosted_uid)))
        params.extend(extras)
        return self._with(params)

    def push_return_url(
        self, push: str, hosted_uid: bytes | None = None, user_lists: Sequence[int] = ()
    ) -> str:
        """``exchange_url?google_nid=<nid>&google_push=<push>`` (+ ``&google_hm=<uid>``, +
        ``&google_ula=<list id>`` for each of ``user_lists``)."""
        params = [QueryParam("google_nid", self.nid), QueryParam("google_push", push)]
        if hosted_uid is not None:
            params.append(QueryParam("google_hm", format_uid(hosted_uid)))
        params.extend(QueryParam("google_ula", str(list_id)) for list_id in user_lists)
        return self._with(params)
