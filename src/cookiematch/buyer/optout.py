"""The exchange's opt-out notices, received: erase the browser the notice names.

A browser that opts out at the exchange is told to each buyer it was matched with, server to
server (``protocol/optout_notice.py``: a JSON body with the browser's gid under every key
version the exchange still decrypts, signed with a secret the two share). The buyer checks the
signature and its age first, then the body, then that the notice is for this buyer's ``nid``,
and erases every gid's entries and the entries of the uids they name (``MatchTable.erase``).
Each notice is counted by outcome (``exchange_optout``).
"""

from __future__ import annotations

import enum
import logging

from cookiematch.buyer.ids import parse_gid
from cookiematch.buyer.matchtable import MatchTable
from cookiematch.buyer.stats import BuyerStats
from cookiematch.clock import Clock
from cookiematch.errors import StorageError
from cookiematch.protocol.optout_notice import decode_notice, verify

__all__ = ["ExchangeOptOuts", "NoticeOutcome"]

log = logging.getLogger(__name__)


class NoticeOutcome(enum.Enum):
    """What became of one notice; the value is its counter label."""

    ERASED = "erased"
    NOTHING_KNOWN = "nothing_known"  # a valid notice about gids the table does not hold
    BAD_SIGNATURE = "bad_signature"  # missing, wrong, or outside the replay window
    BAD_BODY = "bad_body"  # not a notice, or no gid of a plausible shape
    WRONG_NID = "wrong_nid"  # a notice for another buyer
    STORE_ERROR = "store_error"  # the erasure failed (maybe in part): the exchange retries


class ExchangeOptOuts:
    """Receives the exchange's notices for the buyer ``nid``, signed with ``secret``."""

    def __init__(
        self, table: MatchTable, nid: str, secret: bytes, stats: BuyerStats, *, clock: Clock
    ) -> None:
        self._table = table
        self._nid = nid
        self._secret = secret
        self._stats = stats
        self._clock = clock

    async def receive(self, body: bytes, signature: str | None) -> NoticeOutcome:
        """Check and act on one notice (``signature``: the ``Cookiematch-Signature`` header)."""
        outcome = await self._receive(body, signature)
        self._stats.add("exchange_optout", outcome.value)
        return outcome

    async def _receive(self, body: bytes, signature: str | None) -> NoticeOutcome:
        if not verify(self._secret, body, signature, self._clock()):
            return NoticeOutcome.BAD_SIGNATURE
        notice = decode_notice(body)
        if notice is None:
            return NoticeOutcome.BAD_BODY
        if notice.nid != self._nid:
            return NoticeOutcome.WRONG_NID
        # a gid of another shape was never stored (``/match`` refuses it): nothing to find
        gids = [gid for gid in map(parse_gid, notice.google_gids) if gid is not None]
        if not gids:
            return NoticeOutcome.BAD_BODY
        try:
            erased = await self._table.erase(gids)
        except StorageError as exc:
            log.error("opt-out notice %.64r: erasure failed: %s", notice.id, exc)
            return NoticeOutcome.STORE_ERROR
        if not any(erased):
            return NoticeOutcome.NOTHING_KNOWN
        log.info("opt-out notice %.64r: erased %d + %d entries", notice.id, *erased)
        return NoticeOutcome.ERASED
