"""The buyer's settings, as the domain sees them (built from ``[buyer]`` by the config)."""

from __future__ import annotations

from dataclasses import dataclass

from cookiematch.buyer.matchtag import ExchangeEndpoint
from cookiematch.clock import SECONDS_PER_DAY


@dataclass(frozen=True, slots=True)
class BuyerSettings:
    """What the buyer's services need; every duration in seconds."""

    exchange: ExchangeEndpoint
    hosted_match: bool = False
    push_user_lists: tuple[int, ...] = ()  # google_ula on the pixel-matching return leg
    stale_after_seconds: float = 14.0 * SECONDS_PER_DAY
    entry_ttl_seconds: float = 28.0 * SECONDS_PER_DAY
    tmax_ms: int = 100
    tmax_margin_ms: int = 10
    public_url: str | None = None  # the buyer's own base URL as browsers reach it
    win_notice_base_url: str | None = None  # … as the exchange's servers reach it

    @property
    def win_notice_base(self) -> str | None:
        """The base of every bid's ``nurl`` (``buyer/wins.py``): None for no ``nurl``."""
        return self.win_notice_base_url or self.public_url

    @property
    def nid(self) -> str:
        return self.exchange.nid
