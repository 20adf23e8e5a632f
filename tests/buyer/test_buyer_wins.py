"""Win notices: what a valid one is, and the limits on each field."""

from __future__ import annotations

import pytest

from cookiematch.buyer.matchtag import ExchangeEndpoint
from cookiematch.buyer.model import BuyerSettings
from cookiematch.buyer.wins import MAX_ID, MAX_PRICE, WinNotice, parse_win, win_url

VALID = {"auction": "a1", "bid": "a1-1", "imp": "1", "price": "2.5", "cur": "USD"}


def test_a_valid_notice_and_the_nurl_that_asks_for_it() -> None:
    assert parse_win(VALID) == WinNotice("a1", "a1-1", "1", 2.5)
    assert parse_win({k: v for k, v in VALID.items() if k != "cur"}) is not None
    assert parse_win({**VALID, "price": str(MAX_PRICE)}) is not None
    long = "a" * (MAX_ID - 2)
    assert parse_win({**VALID, "auction": long, "bid": f"{long}-1"}) is not None
    url = win_url("https://buyer.example/")
    assert url.startswith("https://buyer.example/win?auction=${AUCTION_ID}&")
    assert "price=${AUCTION_PRICE}" in url


@pytest.mark.parametrize(
    "change",
    [
        {"auction": None},
        {"imp": ""},
        {"bid": "a1-2"},
        {"price": None},
        {"price": "0"},
        {"price": "inf"},
        {"price": str(MAX_PRICE * 1.01)},
        {"price": "${AUCTION_PRICE}"},
        {"cur": "EUR"},
        {"auction": "a" * (MAX_ID + 1), "bid": "a" * (MAX_ID + 1) + "-1"},
    ],
)
def test_an_invalid_notice_is_none(change: dict[str, str | None]) -> None:
    assert parse_win({**VALID, **change}) is None


def test_the_nurl_base_is_the_win_notice_base_url_else_the_public_url() -> None:
    exchange = ExchangeEndpoint("https://exchange.example/pixel", "dsp")
    public = BuyerSettings(exchange, public_url="https://buyer.example")
    assert public.win_notice_base == "https://buyer.example"
    inside = BuyerSettings(
        exchange, public_url="https://b.example", win_notice_base_url="http://b:1"
    )
    assert inside.win_notice_base == "http://b:1"
    assert BuyerSettings(exchange).win_notice_base is None  # bids carry no nurl
