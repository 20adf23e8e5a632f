"""Win notices: which of the buyer's bids won, as the exchange reports them.

OpenRTB 2.6 (section 4.3): the exchange calls the winning bid's ``nurl`` server-side, with its
macros substituted. With ``win_notice_base_url`` (default ``public_url``) set, every bid
carries ``nurl`` = the buyer's own ``/win`` with the macros that identify the bid and its
price::

    {base}/win?auction=${AUCTION_ID}&bid=${AUCTION_BID_ID}&imp=${AUCTION_IMP_ID}
                    &price=${AUCTION_PRICE}&cur=${AUCTION_CURRENCY}

A notice needs no credential, but is checked: the ids present and at most ``MAX_ID`` long, the
bid id the one the bidder gives (``<auction>-<imp>``), the price a finite CPM above 0 and at
most ``MAX_PRICE`` (an unsubstituted macro is not one), the currency USD when given. Counted
(``auction`` event: ``bid`` per bid placed, ``won`` per valid notice, ``invalid_notice``);
duplicates are not detected (the exchange sends one notice per win).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import msgspec

from cookiematch.protocol.openrtb import CURRENCY

__all__ = ["MAX_ID", "MAX_PRICE", "WIN_PATH", "WinNotice", "bid_id", "parse_win", "win_url"]

WIN_PATH = "/win"
MAX_ID = 128
MAX_PRICE = 1_000_000.0  # CPM, USD
_MACROS = (
    "auction=${AUCTION_ID}&bid=${AUCTION_BID_ID}&imp=${AUCTION_IMP_ID}"
    "&price=${AUCTION_PRICE}&cur=${AUCTION_CURRENCY}"
)


class WinNotice(msgspec.Struct, frozen=True):
    """One valid notice: the bid that won, and the price it cleared at (CPM, USD)."""

    auction: str
    bid: str
    imp: str
    price: float


def bid_id(auction: str, imp: str) -> str:
    """The id the bidder gives its bid for impression ``imp`` of request ``auction``."""
    return f"{auction}-{imp}"


def win_url(base: str) -> str:
    """The ``nurl`` of every bid: the buyer's ``/win`` under ``base``, with the macros."""
    return f"{base.rstrip('/')}{WIN_PATH}?{_MACROS}"


def parse_win(params: Mapping[str, str | None]) -> WinNotice | None:
    """The notice in a ``/win`` query, or None when it is not a valid one."""
    auction, bid, imp = params.get("auction"), params.get("bid"), params.get("imp")
    if not auction or not bid or not imp or max(len(auction), len(bid), len(imp)) > MAX_ID:
        return None
    if bid != bid_id(auction, imp) or params.get("cur", CURRENCY) != CURRENCY:
        return None
    try:
        price = float(params.get("price") or "")
    except ValueError:
        return None
    if not math.isfinite(price) or not 0 < price <= MAX_PRICE:
        return None
    return WinNotice(auction, bid, imp, price)
