"""Win notices: which of the buyer's bids won, as the exchange reports them, each counted once.

OpenRTB 2.6 (section 4.3): the exchange calls the winning bid's ``nurl`` server-side, with its
macros substituted. With ``win_notice_base_url`` (default ``public_url``) set, every bid
carries ``nurl`` = the buyer's own ``/win`` with the ids of the bid written in, signed, and
the macros of its price (``protocol/win_notice.py``)::

    {base}/win?auction=<request id>&bid=<bid id>&imp=<imp id>&t=<bid time>
                    &price=${AUCTION_PRICE}&cur=${AUCTION_CURRENCY}&sig=<signature>

The signing key is derived (HKDF-SHA256) from ``[buyer] win_notice_key``, else from
``admin_token``; every worker and instance of one buyer derives the same. A notice needs no
credential but its signature: one that does not verify (forged, its ids or time changed, no
``sig``), or whose price is not a finite CPM above 0 and at most 1,000,000, or whose currency
is not USD (``protocol/win_notice.py``: ``parse_win``), or older than ``MAX_AGE_SECONDS`` (or
from the future beyond ``MAX_SKEW_SECONDS``) is ``invalid_notice``. The first valid notice
of a bid is recorded with ``set_if_absent`` (key ``bw:<nid>:<sig>``, TTL
``RECORD_TTL_SECONDS``, longer than a notice is accepted) before the answer, and counted
``won``; a repeat is answered alike (the exchange has nothing to retry) but counted
``duplicate_notice``. A store that fails leaves the notice unrecorded:
``notice_store_error``, and the exchange is told to try again later.
(``auction`` event: ``bid`` per bid placed, and the outcomes above.)
"""

from __future__ import annotations

import enum
import logging

from cookiematch.buyer.stats import BuyerStats
from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.protocol.query import QueryParam
from cookiematch.protocol.win_notice import WinSigner, parse_win, win_url
from cookiematch.storage import Store

__all__ = [
    "MAX_AGE_SECONDS",
    "MAX_SKEW_SECONDS",
    "RECORD_TTL_SECONDS",
    "WinNotices",
    "WinOutcome",
    "WinUrls",
    "bid_id",
]

MAX_AGE_SECONDS = 2 * SECONDS_PER_DAY
"""A notice of a bid placed longer ago than this is refused (its record may be gone)."""
MAX_SKEW_SECONDS = 300
"""How far in the future a bid's time may look (another worker's clock)."""
RECORD_TTL_SECONDS = MAX_AGE_SECONDS + SECONDS_PER_DAY
"""How long the record of a counted notice lives: beyond the age a notice is accepted at."""

log = logging.getLogger(__name__)


class WinOutcome(enum.Enum):
    """What one notice was; the value is its ``auction`` counter label."""

    WON = "won"
    DUPLICATE = "duplicate_notice"
    INVALID = "invalid_notice"
    STORE_ERROR = "notice_store_error"


def bid_id(auction: str, imp: str) -> str:
    """The id the bidder gives its bid for impression ``imp`` of request ``auction``."""
    return f"{auction}-{imp}"


class WinUrls:
    """The ``nurl`` of each bid: the buyer's ``/win`` under ``base``, signed by ``signer``."""

    __slots__ = ("_base", "_signer")

    def __init__(self, base: str, signer: WinSigner) -> None:
        self._base = base.rstrip("/")
        self._signer = signer

    def nurl(self, auction: str, imp: str, issued: float) -> str | None:
        """The ``nurl`` of the bid for ``imp`` of request ``auction`` placed at ``issued``
        (None when an id cannot travel in a URL: the bid then carries none)."""
        return win_url(self._base, self._signer, auction, bid_id(auction, imp), imp, int(issued))


class WinNotices:
    """Checks each notice, records the first one of a bid, counts every one."""

    def __init__(
        self, store: Store, signer: WinSigner, nid: str, stats: BuyerStats, *, clock: Clock
    ) -> None:
        self._store = store
        self._signer = signer
        self._prefix = f"bw:{nid}:"
        self._stats = stats
        self._clock = clock

    async def receive(self, query: tuple[QueryParam, ...] | None) -> WinOutcome:
        """The outcome of one ``/win`` query (None: one that did not parse), counted."""
        outcome = await self._receive(query)
        self._stats.add("auction", outcome.value)
        return outcome

    async def _receive(self, query: tuple[QueryParam, ...] | None) -> WinOutcome:
        if query is None:
            return WinOutcome.INVALID
        notice = parse_win({p.name: p.value for p in query}, self._signer)
        if notice is None:
            return WinOutcome.INVALID
        age = self._clock() - notice.issued
        if not -MAX_SKEW_SECONDS <= age <= MAX_AGE_SECONDS:
            return WinOutcome.INVALID
        key = self._prefix + notice.sig
        try:
            first = await self._store.set_if_absent(
                key, repr(notice.price).encode(), ttl=RECORD_TTL_SECONDS
            )
        except StorageError as exc:
            if not isinstance(exc, StoreUnavailable):  # the store's guard logs an outage once
                log.error("win notice not recorded: %s", exc)
            return WinOutcome.STORE_ERROR
        return WinOutcome.WON if first else WinOutcome.DUPLICATE
