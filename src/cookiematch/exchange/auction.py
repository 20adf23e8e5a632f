"""One real-time auction: bid requests out concurrently, answers in until the deadline.

First price: the highest valid bid wins and pays what it bid (ties: the lower ``nid``).
Each buyer's answer ends as one ``Outcome``; a late answer is a timeout (its request is
cancelled at the deadline), a failed one an error, a malformed one invalid: none of them can
delay or break the auction. A buyer over its ``max_qps`` is not asked (throttled).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cookiematch.clock import Clock
from cookiematch.errors import InvalidBidResponse
from cookiematch.exchange.bids import ValidBid, parse_response
from cookiematch.exchange.model import Buyer
from cookiematch.exchange.monitoring import BuyerMonitor, Count
from cookiematch.exchange.throttle import TokenBuckets
from cookiematch.protocol.openrtb import BidRequest, encode_bid_request

log = logging.getLogger(__name__)


class BidTransport(Protocol):
    """Sends one bid request. Raises TimeoutError when out of time, OSError-like errors
    (any Exception) when the request fails; returns the status and body otherwise."""

    async def post(self, url: str, body: bytes, timeout: float) -> tuple[int, bytes]: ...


class Outcome(enum.StrEnum):
    BID = "bid"
    NO_BID = "no_bid"
    TIMEOUT = "timeout"
    ERROR = "error"
    INVALID = "invalid"


_COUNTS = {
    Outcome.BID: Count.BIDS,
    Outcome.NO_BID: Count.NO_BIDS,
    Outcome.TIMEOUT: Count.TIMEOUTS,
    Outcome.ERROR: Count.ERRORS,
    Outcome.INVALID: Count.INVALID,
}


@dataclass(frozen=True, slots=True)
class AuctionResult:
    winner: ValidBid | None
    outcomes: dict[str, Outcome]  # nid -> how its answer ended (asked buyers only)


class Auction:
    """Runs auctions for one worker; holds the per-buyer request-rate buckets."""

    def __init__(self, transport: BidTransport, monitor: BuyerMonitor, *, clock: Clock) -> None:
        self._transport = transport
        self._monitor = monitor
        self._qps = TokenBuckets(clock)

    def admit(self, buyer: Buyer) -> bool:
        """False (and counted as throttled) when the buyer is over its ``max_qps``."""
        if buyer.max_qps is None or self._qps.allow(buyer.nid, buyer.max_qps):
            return True
        self._monitor.count(buyer.nid, Count.BID_REQUESTS_THROTTLED)
        return False

    async def run(
        self, bidders: Sequence[tuple[Buyer, BidRequest]], timeout: float
    ) -> AuctionResult:
        """Ask every bidder at once; whatever has not answered after ``timeout`` s is late."""
        if not bidders:
            return AuctionResult(None, {})
        tasks = {
            asyncio.get_running_loop().create_task(self._ask(buyer, request, timeout)): buyer
            for buyer, request in bidders
        }
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        outcomes: dict[str, Outcome] = {}
        bids: list[ValidBid] = []
        for task, buyer in tasks.items():
            if task in done:
                outcome, found = task.result()
                bids += found
            else:
                outcome = Outcome.TIMEOUT
            outcomes[buyer.nid] = outcome
            self._monitor.count(buyer.nid, _COUNTS[outcome])
        winner = min(bids, key=lambda bid: (-bid.price, bid.nid), default=None)
        if winner is not None:
            self._monitor.count(winner.nid, Count.WINS)
        return AuctionResult(winner, outcomes)

    async def _ask(
        self, buyer: Buyer, request: BidRequest, timeout: float
    ) -> tuple[Outcome, list[ValidBid]]:
        assert buyer.bidder_url is not None
        self._monitor.count(buyer.nid, Count.BID_REQUESTS)
        if request.user is not None and request.user.buyeruid is not None:
            self._monitor.count(buyer.nid, Count.BID_REQUESTS_MATCHED)
        try:
            status, body = await self._transport.post(
                buyer.bidder_url, encode_bid_request(request), timeout
            )
        except TimeoutError:
            return Outcome.TIMEOUT, []
        except Exception as exc:
            log.info("bid request to %s failed: %s", buyer.nid, exc)
            return Outcome.ERROR, []
        if status == 204:
            return Outcome.NO_BID, []
        if status != 200:
            return Outcome.ERROR, []
        try:
            bids = parse_response(buyer.nid, body, request)
        except InvalidBidResponse as exc:
            log.info("invalid bid response from %s: %s", buyer.nid, exc)
            return Outcome.INVALID, []
        return (Outcome.BID, bids) if bids else (Outcome.NO_BID, [])
