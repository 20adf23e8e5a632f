"""The signed win-notice URL: what it carries, what its signature covers, what a notice must be."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.exchange.bids import expand_macros
from cookiematch.protocol.query import parse_query
from cookiematch.protocol.win_notice import (
    MAX_ID,
    MAX_PRICE,
    SIG_LENGTH,
    WinNotice,
    WinSigner,
    parse_win,
    win_url,
)

SECRET = b"buyer-admin-token-0123456789"
NID = "dsp"
SIGNER = WinSigner.derive(SECRET, NID)
BASE = "https://buyer.example"
T = 1_800_000_000
MACROS = {"${AUCTION_PRICE}": "2.5", "${AUCTION_CURRENCY}": "USD"}


def reference_sig(secret: bytes, nid: str, auction: str, bid: str, imp: str, issued: int) -> str:
    """The construction of docs/buyer.md, written out with the standard library's HMAC."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"cookiematch win notice", info=nid.encode()
    ).derive(secret)
    message = "".join(f"{len(x)}:{x}," for x in (auction, bid, imp, str(issued)))
    tag = hmac.new(key, message.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(tag).rstrip(b"=").decode()


def params_of(url: str) -> dict[str, str | None]:
    return {p.name: p.value for p in parse_query(urlsplit(url).query)}


def notice_url(auction: str = "a1", imp: str = "1", issued: int = T) -> str:
    url = win_url(BASE, SIGNER, auction, f"{auction}-{imp}", imp, issued)
    assert url is not None
    return expand_macros(url, MACROS)  # as the exchange does when the bid wins


def test_the_url_carries_the_ids_the_time_the_price_macros_and_the_signature() -> None:
    url = win_url(BASE, SIGNER, "a1", "a1-1", "1", T)
    sig = reference_sig(SECRET, NID, "a1", "a1-1", "1", T)
    assert len(sig) == SIG_LENGTH
    assert url == (
        f"{BASE}/win?auction=a1&bid=a1-1&imp=1&t={T}"
        f"&price=${{AUCTION_PRICE}}&cur=${{AUCTION_CURRENCY}}&sig={sig}"
    )
    notice = parse_win(params_of(expand_macros(url, MACROS)), SIGNER)
    assert notice == WinNotice("a1", "a1-1", "1", T, 2.5, sig)


def test_ids_are_percent_encoded_and_no_macro_hides_in_them() -> None:
    auction = "a&b=c ${AUCTION_PRICE} é/?#+%"
    url = win_url(BASE, SIGNER, auction, f"{auction}-1", "1", T)
    assert url is not None and url.count("${AUCTION_PRICE}") == 1
    assert "auction=a%26b%3Dc%20%24%7BAUCTION_PRICE%7D%20%C3%A9%2F%3F%23%2B%25&" in url
    notice = parse_win(params_of(expand_macros(url, MACROS)), SIGNER)
    assert notice is not None and notice.auction == auction


IDS = st.characters(blacklist_categories=("Cs", "Cc"))  # what UTF-8 and a query carry


@given(
    auction=st.text(IDS, min_size=1, max_size=MAX_ID - 2),
    imp=st.text(IDS, min_size=1, max_size=1),
    issued=st.integers(min_value=0, max_value=10**12 - 1),
)
def test_every_signed_url_round_trips(auction: str, imp: str, issued: int) -> None:
    bid = f"{auction}-{imp}"
    url = win_url(BASE, SIGNER, auction, bid, imp, issued)
    assert url is not None
    params = params_of(expand_macros(url, MACROS))
    sig = reference_sig(SECRET, NID, auction, bid, imp, issued)
    assert parse_win(params, SIGNER) == WinNotice(auction, bid, imp, issued, 2.5, sig)


def test_an_id_that_cannot_travel_gets_no_url() -> None:
    long = "a" * (MAX_ID + 1)
    assert win_url(BASE, SIGNER, long, f"{long}-1", "1", T) is None
    assert win_url(BASE, SIGNER, "a\ud800", "a\ud800-1", "1", T) is None
    assert win_url(BASE, SIGNER, "", "-1", "1", T) is None


def test_the_key_is_the_buyers_own() -> None:
    params = params_of(notice_url())
    assert parse_win(params, WinSigner.derive(SECRET, "other-dsp")) is None
    assert parse_win(params, WinSigner.derive(SECRET + b"x", NID)) is None
    assert parse_win(params, SIGNER) is not None
    with pytest.raises(ValueError):
        WinSigner(b"short")
    with pytest.raises(ValueError):
        WinSigner.derive(b"", NID)
    assert repr(SIGNER) == "WinSigner()"  # the key never shows


@pytest.mark.parametrize(
    "change",
    [
        {"auction": "a2"},  # another auction
        {"imp": "2"},  # another impression
        {"bid": "a1-2"},
        {"t": str(T + 1)},  # another time
        {"t": "soon"},
        {"t": None},
        {"sig": None},  # no signature
        {"sig": ""},
        {"sig": "A" * SIG_LENGTH},
        {"sig": "é" * SIG_LENGTH},
        {"price": None},
        {"price": "0"},
        {"price": "inf"},
        {"price": "nan"},
        {"price": str(MAX_PRICE * 1.01)},
        {"price": "${AUCTION_PRICE}"},  # not substituted
        {"cur": "EUR"},
        {"auction": "a" * (MAX_ID + 1)},
    ],
)
def test_a_notice_the_buyer_did_not_sign_as_is_none(change: dict[str, str | None]) -> None:
    params = {**params_of(notice_url()), **change}
    assert parse_win({k: v for k, v in params.items() if v is not None}, SIGNER) is None


def test_the_price_and_currency_are_the_exchanges() -> None:
    params = params_of(notice_url())
    assert parse_win({**params, "price": str(MAX_PRICE)}, SIGNER) is not None
    assert parse_win({k: v for k, v in params.items() if k != "cur"}, SIGNER) is not None
