"""The buyer's console page and the series it charts.

/console/buyer    the match rate (bid-time look-ups that found the user) over time, the
                  match table's size and stale share (as last measured, and over the last
                  day), bid answers per second by outcome, bids placed and won and the
                  win rate (the exchange's win notices over bids placed), the redirect
                  handler's and pixel matching's outcomes, match-tag decisions, store
                  health, and the bids this worker answered last
"""

from __future__ import annotations

import time

from starlette.requests import Request

from cookiematch.buyer.bidlog import BidLog
from cookiematch.buyer.table_size import MatchTableSize, MatchTableSizeLog
from cookiematch.web.console.app import Page
from cookiematch.web.console.html import chart, table
from cookiematch.web.console.series import Selection
from cookiematch.web.console.session import Session
from cookiematch.web.console.store import STORE_SELECTIONS, store_charts

__all__ = ["SELECTIONS", "buyer_pages"]

RECENT_BIDS = 20
MATCHED = "matched"  # the lookup counter's label of a known user
SELECTIONS = (
    *(
        Selection(f"buyer_{event}", f"cookiematch_buyer_{event}", ("outcome",))
        for event in ("lookup", "bid", "auction", "match", "push", "matchtag")
    ),
    Selection("buyer_table", "cookiematch_buyer_match_table_entries", ("age",), counter=False),
    *STORE_SELECTIONS,
)
DAY_MINUTES = 24 * 60


def _size_summary(size: MatchTableSize | None) -> str:
    if size is None:
        return "<p>The match table has not been counted yet.</p>"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(size.measured_at))
    share = f"{size.stale / size.entries:.1%}" if size.entries else "-"
    return table(
        ["counted at (UTC)", "match-table entries", "stale", "stale share"],
        [[when, str(size.entries), str(size.stale), share]],
    )


def buyer_pages(bid_log: BidLog, sizes: MatchTableSizeLog) -> list[Page]:
    """The buyer's page over its bid log and its match table's measured size."""

    async def overview(request: Request, session: Session) -> str:
        rows = [
            [
                time.strftime("%H:%M:%S", time.gmtime(record.received_at)),
                record.request_id,
                record.outcome,
                "yes" if record.matched else "no",
                ", ".join(f"{price:g}" for price in record.prices),
                record.site_domain or record.app_bundle or "",
            ]
            for record in reversed(bid_log.recent(RECENT_BIDS))
        ]
        head = ["time (UTC)", "request", "outcome", "user known", "prices", "site or app"]
        return (
            "<h2>Match table (all workers, as last measured)</h2>"
            + _size_summary(await sizes.latest())
            + "<div class=charts>"
            + chart(
                "Match rate (bid requests whose user is known)", "buyer_lookup", share="matched"
            )
            + chart("Match-table entries by age", "buyer_table", minutes=DAY_MINUTES)
            + chart(
                "Stale share of the match table",
                "buyer_table",
                minutes=DAY_MINUTES,
                share="stale",
            )
            + chart("Bid answers per second by outcome", "buyer_bid")
            + chart("Bids placed and win notices per second", "buyer_auction")
            + chart(
                "Win rate (win notices over bids placed)", "buyer_auction", ratio=("won", "bid")
            )
            + chart("Match redirects per second by outcome", "buyer_match")
            + chart("Pixel-matching pushes per second by outcome", "buyer_push")
            + chart("Match-tag decisions per second by reason", "buyer_matchtag")
            + store_charts()
            + "</div><h2>Bids answered last (this worker)</h2>"
            + table(head, rows)
        )

    return [Page("/buyer", "Buyer", overview)]
