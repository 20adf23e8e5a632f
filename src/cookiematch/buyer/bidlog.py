"""A bounded in-memory log of the bid requests received, newest last (demo and tests).

It keeps no ID of the user (neither the gid, the hosted data, ``user.ext``, nor the buyer's
uid): only whether the user was matched. A log held per worker process cannot be erased from
reliably (the CLI does not reach it, another worker may hold the record), so it holds nothing
to erase; the match table is where a user is found (docs/privacy.md).

A record can be appended as the function and arguments that build it (``append_later``): the
bidder's hot path then only queues what it already holds, and the record is built when the log
is read. The arguments must not change afterwards (the bidder's are immutable).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TypeVarTuple

import msgspec

Ts = TypeVarTuple("Ts")


class BidRecord(msgspec.Struct, frozen=True):
    """What the bidder saw and answered for one request."""

    received_at: float
    request_id: str
    outcome: str  # "bid" or the no-bid reason
    matched: bool = False  # the buyer knew the user (hosted data or its table)
    match_tag: bool = False
    match_tag_reason: str | None = None
    privacy_reason: str | None = None  # the policy's reason for PERSONALISE (docs/privacy.md)
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
        self._records: deque[BidRecord | partial[BidRecord]] = deque(maxlen=size)

    def append(self, record: BidRecord) -> None:
        self._records.append(record)

    def append_later(self, build: Callable[[*Ts], BidRecord], *args: *Ts) -> None:
        """Append the record ``build(*args)`` returns, built when the log is read."""
        self._records.append(partial(build, *args))  # one C object, no Python __init__

    def recent(self, limit: int | None = None) -> list[BidRecord]:
        records = list(self._records)
        if limit is not None:
            records = records[-limit:] if limit > 0 else []
        return [r() if isinstance(r, partial) else r for r in records]

    def __len__(self) -> int:
        return len(self._records)
