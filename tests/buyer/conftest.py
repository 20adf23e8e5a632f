"""Buyer domain fixtures: a real SQLite store, an injected clock and uid source."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cookiematch.buyer.bidder import Bidder
from cookiematch.buyer.bidlog import BidLog
from cookiematch.buyer.campaigns import Audience, Campaign
from cookiematch.buyer.matching import Matcher
from cookiematch.buyer.matchtable import MatchTable
from cookiematch.buyer.matchtag import ExchangeEndpoint
from cookiematch.buyer.model import BuyerSettings
from cookiematch.buyer.stats import BuyerStats
from cookiematch.buyer.wins import WinUrls
from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.privacy.policy import PrivacyPolicy, PrivacySettings
from cookiematch.storage import Store, open_store

NOW = 1_700_000_000.0
NID = "finest-dsp"
EXCHANGE_URL = "https://exchange.example/pixel"
GID = "dGhpcyBpcyBhbiBleGFtGxl"  # the document's example
RETARGET = Campaign(
    "retarget", adm="<p>again</p>${MATCH_TAG}", audience=Audience.MATCHED, matched_bid_price=4.0
)
PROSPECT = Campaign("prospect", adm="<p>hello</p>", audience=Audience.ANY, bid_price=0.5)


class Clock:
    """Seconds that move only when a test moves them."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Uids:
    """Deterministic buyer uids: 00..00, 01..01, ..."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self.issued: list[bytes] = []

    def __call__(self) -> bytes:
        uid = bytes([next(self._counter)]) * 16
        self.issued.append(uid)
        return uid


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def uids() -> Uids:
    return Uids()


@pytest.fixture
def policy() -> PrivacyPolicy:
    """The default policy (GDPR assumed not to apply unless a request says so)."""
    return PrivacyPolicy(PrivacySettings())


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'buyer.db'}", clock=clock)
    yield opened
    await opened.close()


def settings(
    *, hosted: bool = False, public_url: str | None = None, push_user_lists: tuple[int, ...] = ()
) -> BuyerSettings:
    return BuyerSettings(
        exchange=ExchangeEndpoint(EXCHANGE_URL, NID),
        hosted_match=hosted,
        push_user_lists=push_user_lists,
        stale_after_seconds=14 * DAY,
        entry_ttl_seconds=28 * DAY,
        public_url=public_url,
        tmax_ms=10_000,  # a loaded test machine is not a bidder over its time: tests give tmax
    )


@pytest.fixture(params=["keys", "buckets"])
def table(request: pytest.FixtureRequest, store: Store, clock: Clock) -> MatchTable:
    """The match table in each layout (4 buckets per direction: entries share buckets)."""
    buckets = 4 if request.param == "buckets" else None
    return MatchTable(store, NID, ttl_seconds=28 * DAY, clock=clock, buckets=buckets)


MakeMatcher = Callable[..., Matcher]
MakeBidder = Callable[..., Bidder]


@pytest.fixture
def make_matcher(
    table: MatchTable, clock: Clock, uids: Uids, policy: PrivacyPolicy
) -> Iterator[MakeMatcher]:
    def make(*, policy: PrivacyPolicy = policy, **kwargs: Any) -> Matcher:
        return Matcher(
            table, settings(**kwargs), BuyerStats(), policy=policy, new_uid=uids, clock=clock
        )

    yield make


@pytest.fixture
def make_bidder(table: MatchTable, clock: Clock, policy: PrivacyPolicy) -> Iterator[MakeBidder]:
    def make(
        campaigns: tuple[Campaign, ...] = (RETARGET, PROSPECT),
        *,
        policy: PrivacyPolicy = policy,
        win_urls: WinUrls | None = None,
        **kwargs: Any,
    ) -> Bidder:
        return Bidder(
            table,
            campaigns,
            settings(**kwargs),
            BuyerStats(),
            BidLog(10),
            policy=policy,
            clock=clock,
            win_urls=win_urls,
        )

    yield make
