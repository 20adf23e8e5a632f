"""A bounded in-memory log of the bid requests received, newest last (demo and tests)."""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec


class BidRecord(msgspec.Struct, frozen=True):
    """What the bidder saw and answered for one request."""

    received_at: float
    request_id: str
    outcome: str  # "bid" or the no-bid reason
    user_id: str | None = None
    buyeruid: str | None = None
    user_ext: dict[str, Any] | None = None
    matched: bool = False
    buyer_uid: str | None = None  # the buyer's uid for this user, if it knows one
    match_tag: bool = False
    match_tag_reason: str | None = None
    site_domain: str | None = None
    site_page: str | None = None
    app_bundle: str | None = None
    imp_ids: list[str] = []
    tmax: int | None = None
    prices: list[float] = []
    campaigns: list[str] = []


class BidLog:
    """The last ``size`` records (per worker process)."""

    def __init__(self, size: int) -> None:
        self._records: deque[BidRecord] = deque(maxlen=size)

    def append(self, record: BidRecord) -> None:
        self._records.append(record)

    def recent(self, limit: int | None = None) -> list[BidRecord]:
        records = list(self._records)
        return records if limit is None else records[-limit:] if limit > 0 else []

    def __len__(self) -> int:
        return len(self._records)
