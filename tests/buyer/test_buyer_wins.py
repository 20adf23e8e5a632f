"""Win notices: each bid's signed nurl, the first notice of a bid counted once, repeats and
forgeries told apart, over a real SQLite store."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from cookiematch.buyer.matchtag import ExchangeEndpoint
from cookiematch.buyer.model import BuyerSettings
from cookiematch.buyer.stats import BuyerStats
from cookiematch.buyer.wins import (
    MAX_AGE_SECONDS,
    MAX_SKEW_SECONDS,
    RECORD_TTL_SECONDS,
    WinNotices,
    WinOutcome,
    WinUrls,
)
from cookiematch.exchange.bids import expand_macros
from cookiematch.protocol.openrtb import Banner, BidRequest, Imp
from cookiematch.protocol.query import QueryParam, parse_query
from cookiematch.protocol.win_notice import WinSigner
from cookiematch.storage import Store

from .conftest import NID, Clock, MakeBidder

SIGNER = WinSigner.derive(b"a buyer's secret, 16+ characters", NID)
URLS = WinUrls("https://buyer.example/", SIGNER)


def substituted(nurl: str | None, price: str = "0.5") -> tuple[QueryParam, ...]:
    """The query of a notice as the exchange sends it: the price macros substituted."""
    assert nurl is not None
    url = expand_macros(nurl, {"${AUCTION_PRICE}": price, "${AUCTION_CURRENCY}": "USD"})
    return parse_query(urlsplit(url).query)


def replaced(query: tuple[QueryParam, ...], name: str, value: str | None) -> tuple[QueryParam, ...]:
    kept = tuple(p for p in query if p.name != name)
    return kept if value is None else (*kept, QueryParam(name, value))


@pytest.fixture
def notices(store: Store, clock: Clock) -> tuple[WinNotices, BuyerStats]:
    stats = BuyerStats()
    return WinNotices(store, SIGNER, NID, stats, clock=clock), stats


async def test_every_bid_carries_its_own_signed_nurl(make_bidder: MakeBidder, clock: Clock) -> None:
    bidder = make_bidder(win_urls=URLS)
    banner = Banner(w=300, h=250)
    request = BidRequest(id="r&1", imp=[Imp("1", banner), Imp("2", banner)], tmax=1000)
    result = await bidder.bid(request)
    assert result.response is not None
    bids = result.response.seatbid[0].bid
    assert [b.nurl for b in bids] == [
        URLS.nurl("r&1", "1", clock.now),
        URLS.nurl("r&1", "2", clock.now),
    ]
    nurl = bids[0].nurl
    assert nurl is not None and nurl.startswith(
        "https://buyer.example/win?auction=r%261&bid=r%261-1&imp=1&"
    )
    plain = await make_bidder().bid(request)  # a buyer without a nurl base
    assert plain.response is not None and plain.response.seatbid[0].bid[0].nurl is None


async def test_a_notice_counts_once_then_as_a_duplicate(
    notices: tuple[WinNotices, BuyerStats], store: Store, clock: Clock
) -> None:
    receiver, stats = notices
    query = substituted(URLS.nurl("a1", "1", clock.now))
    assert await receiver.receive(query) is WinOutcome.WON
    assert await receiver.receive(query) is WinOutcome.DUPLICATE
    # another price for the same bid is still that bid's notice
    assert (
        await receiver.receive(substituted(URLS.nurl("a1", "1", clock.now), "9"))
        is WinOutcome.DUPLICATE
    )
    assert await receiver.receive(substituted(URLS.nurl("a1", "2", clock.now))) is WinOutcome.WON
    assert stats.snapshot()["auction"] == {"won": 2, "duplicate_notice": 2}
    sig = dict((p.name, p.value) for p in query)["sig"]
    entry = await store.get_entry(f"bw:{NID}:{sig}")
    assert entry is not None and entry[0] == b"0.5"
    assert entry[1] is not None and MAX_AGE_SECONDS < entry[1] <= RECORD_TTL_SECONDS


@pytest.mark.parametrize(
    ("name", "value"),
    [("auction", "a2"), ("imp", "2"), ("bid", "a1-2"), ("t", "1"), ("sig", None),
     ("sig", "AAAAAAAAAAAAAAAAAAAAAA"), ("price", "${AUCTION_PRICE}"), ("cur", "EUR")],
)  # fmt: skip
async def test_a_tampered_notice_is_invalid_and_recorded_nowhere(
    notices: tuple[WinNotices, BuyerStats], clock: Clock, name: str, value: str | None
) -> None:
    receiver, stats = notices
    query = substituted(URLS.nurl("a1", "1", clock.now))
    assert await receiver.receive(replaced(query, name, value)) is WinOutcome.INVALID
    assert await receiver.receive(None) is WinOutcome.INVALID  # a query that did not parse
    assert await receiver.receive(query) is WinOutcome.WON  # the real one still counts
    assert stats.snapshot()["auction"] == {"invalid_notice": 2, "won": 1}


async def test_a_notice_is_accepted_only_while_its_record_would_live(
    notices: tuple[WinNotices, BuyerStats], clock: Clock
) -> None:
    receiver, _ = notices
    old = substituted(URLS.nurl("a1", "1", clock.now - MAX_AGE_SECONDS - 1))
    future = substituted(URLS.nurl("a1", "2", clock.now + MAX_SKEW_SECONDS + 1))
    skewed = substituted(URLS.nurl("a1", "3", clock.now + MAX_SKEW_SECONDS))
    assert await receiver.receive(old) is WinOutcome.INVALID
    assert await receiver.receive(future) is WinOutcome.INVALID
    assert await receiver.receive(skewed) is WinOutcome.WON
    late = substituted(URLS.nurl("a1", "4", clock.now))
    assert await receiver.receive(late) is WinOutcome.WON
    clock.advance(MAX_AGE_SECONDS)  # the last moment it is accepted: its record still there
    assert await receiver.receive(late) is WinOutcome.DUPLICATE
    clock.advance(1)
    assert await receiver.receive(late) is WinOutcome.INVALID


async def test_a_store_that_fails_leaves_the_notice_unrecorded(
    notices: tuple[WinNotices, BuyerStats], store: Store, clock: Clock
) -> None:
    receiver, stats = notices
    query = substituted(URLS.nurl("a1", "1", clock.now))
    await store.close()
    assert await receiver.receive(query) is WinOutcome.STORE_ERROR
    assert stats.snapshot()["auction"] == {"notice_store_error": 1}


def test_the_nurl_base_is_the_win_notice_base_url_else_the_public_url() -> None:
    exchange = ExchangeEndpoint("https://exchange.example/pixel", "dsp")
    public = BuyerSettings(exchange, public_url="https://buyer.example")
    assert public.win_notice_base == "https://buyer.example"
    inside = BuyerSettings(
        exchange, public_url="https://b.example", win_notice_base_url="http://b:1"
    )
    assert inside.win_notice_base == "http://b:1"
    assert BuyerSettings(exchange).win_notice_base is None  # bids carry no nurl
