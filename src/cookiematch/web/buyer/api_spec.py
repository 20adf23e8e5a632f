"""The buyer's admin API contract: the answers' types (the handlers build their answers with
them) and the registry of its operations, from which ``web/openapi.py`` writes the OpenAPI
document."""

from __future__ import annotations

from typing import Annotated

import msgspec

from cookiematch.buyer.bidlog import BidRecord
from cookiematch.privacy.subjects import ErasureReport, SubjectReport
from cookiematch.web.admin import PREFIX
from cookiematch.web.openapi import COMMON, Operation, Query

__all__ = ["DESCRIPTION", "MAX_RECENT", "OPERATIONS", "BuyerStats", "Match", "RecentBids"]

DESCRIPTION = (
    "The match table looked up by gid or by the buyer's uid, the buyer's counters and recent "
    "bids, and the access and erasure of a user's data."
)
MAX_RECENT = 999_999


class Match(msgspec.Struct, frozen=True, kw_only=True):
    """One match table entry: the exchange's gid and the buyer's uid, how old it is, and
    whether it is past ``stale_after_seconds``."""

    gid: str
    buyer_uid: str
    cver: int
    updated_at: float
    age_seconds: float
    stale: bool


class BuyerStats(msgspec.Struct, frozen=True, kw_only=True):
    """The buyer's counters (``{event: {outcome: count}}``) and bid log size."""

    nid: str
    hosted_match: bool
    counters: dict[str, dict[str, int]]
    bids_logged: int


class RecentBids(msgspec.Struct, frozen=True):
    """The bid log's newest records, newest last."""

    bids: list[BidRecord]


Limit = Annotated[int, msgspec.Meta(ge=0, le=MAX_RECENT)]
SUBJECT = f"{PREFIX}/subjects/{{subject}}"

OPERATIONS: tuple[Operation, ...] = (
    *COMMON,
    Operation(
        "GET",
        f"{PREFIX}/matches/{{gid}}",
        "The match of a gid (the exchange's google_gid)",
        {200: Match},
        problems=(404,),
    ),
    Operation(
        "GET",
        f"{PREFIX}/uids/{{uid}}",
        "The match of a buyer uid (the buyer's own user ID)",
        {200: Match},
        problems=(404,),
    ),
    Operation("GET", f"{PREFIX}/stats", "The buyer's counters", {200: BuyerStats}),
    Operation(
        "GET",
        f"{PREFIX}/bids/recent",
        "The newest bids, newest last",
        {200: RecentBids},
        query=(Query("limit", Limit, "how many (default 50)"),),
        problems=(400,),
    ),
    Operation(
        "GET",
        SUBJECT,
        "Everything stored about a buyer uid (GDPR art. 15)",
        {200: SubjectReport},
        problems=(400,),
    ),
    Operation(
        "DELETE",
        SUBJECT,
        "Erase a buyer uid (GDPR art. 17)",
        {200: ErasureReport},
        problems=(400,),
    ),
)
