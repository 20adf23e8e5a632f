"""Cheap per-process counters of what the buyer did; read by the admin API and ``/metrics``.

Counters are in memory and per worker process (a restart starts from zero): they count
events, not table size. Names are fixed; labels are bounded (codes are clamped by callers).
The server gives the shared counts that ``/metrics`` adds up over its workers; the admin API
shows the worker's own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, MutableMapping, Sequence

from cookiematch.tally import counter, each_counter

EVENTS = {
    "match": "GET /match redirects, by outcome",
    "push": "GET /push pixel-matching requests, by outcome",
    "matchtag": "match-tag decisions (GET /matchtag and bids), by reason",
    "uid_created": "buyer cookies created, by endpoint",
    "hosted_match_status": "google_hm failure statuses reported by the exchange, by status",
    "bid": "POST /bid answers, by outcome (bid or no-bid reason)",
    "lookup": "bid-time look-ups of the match table: matched or unmatched (the match rate)",
    "opt_out": "google_error=1 redirects (opted out): entries erased, or nothing known",
    "optout_page": "the buyer's own opt-out page (POST /optout), by outcome",
    "exchange_optout": "opt-out notices from the exchange (POST /exchange/optout), by outcome",
    "auction": (
        "bids placed (bid) and the exchange's win notices (GET /win): won, duplicate_notice,"
        " invalid_notice, notice_store_error"
    ),
}


Key = tuple[str, str]


class BuyerStats:
    """``add(event, label)``; ``snapshot()`` gives ``{event: {label: count}}``.

    ``counts`` may count a key in one call (an ``add(key)`` method, as the server's shared
    counts have); otherwise ``counts[key] += 1``. ``count(key)`` counts a key made once with
    :func:`key` (the hot path's: no check per call), ``count_each(keys)`` several."""

    def __init__(self, counts: MutableMapping[Key, int] | None = None) -> None:
        self._counts: MutableMapping[Key, int] = Counter() if counts is None else counts
        self.count: Callable[[Key], None] = counter(self._counts)
        self.count_each: Callable[[Sequence[Key]], None] = each_counter(self._counts)

    def add(self, event: str, label: str) -> None:
        self.count(key(event, label))

    def get(self, event: str, label: str) -> int:
        return self._counts.get((event, label), 0)

    def snapshot(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {event: {} for event in EVENTS}
        for (event, label), count in sorted(self._counts.items()):
            out[event][label] = count
        return out


def key(event: str, label: str) -> Key:
    """The key :meth:`BuyerStats.count` counts ``label`` of ``event`` under; ValueError for
    an event not in ``EVENTS``."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    return event, label


def code_label(code: str) -> str:
    """A protocol status code as a bounded label: up to 3 digits, else ``"other"``."""
    return code if code.isascii() and code.isdigit() and len(code) <= 3 else "other"
