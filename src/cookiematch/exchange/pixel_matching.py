"""Pixel matching: on a served impression, pick one more buyer and hand it a match.

A buyer is a candidate when it is not the winner, has ``pixel_matching`` on and a
``push_url``, and, for this browser, no match introduced in the last ``match_expiry_days``
(neither a pixel match, ``keys.pixel_matches_key``, nor a gid its own match tag got,
``browser_record.py``) and no push still pending (issued less than
``push_token_ttl_seconds`` ago). A buyer whose pixel-match response rate is below 90 %
stays a candidate for only a fraction of impressions (``THROTTLED_FRACTION``), so that it
can show it answers again; one whose pixel matching enforcement suspended (``suspended``,
``enforcement.py``) is not a candidate. One candidate is drawn uniformly with the injected
random source (candidates in ``nid`` order: deterministic).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.exchange.browser_record import BrowserRecord
from cookiematch.exchange.model import Buyer, ExchangeSettings
from cookiematch.exchange.monitoring import BuyerMonitor, Count
from cookiematch.protocol.push import PushTokens
from cookiematch.protocol.redirect import ResponseParams
from cookiematch.protocol.userid import UserIdCipher

MIN_RESPONSE_RATE = 0.9
THROTTLED_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class PixelMatch:
    """The buyer chosen for this impression and the URL of the ``<img>`` to place."""

    nid: str
    url: str
    issued_at: int


class PixelMatcher:
    """Chooses the additional buyer and builds its push URL."""

    def __init__(
        self,
        *,
        cipher: UserIdCipher,
        push_tokens: PushTokens,
        settings: ExchangeSettings,
        monitor: BuyerMonitor,
        clock: Clock,
        random: Callable[[], float],
        suspended: Callable[[str], bool] | None = None,
    ) -> None:
        self._cipher = cipher
        self._push = push_tokens
        self._settings = settings
        self._monitor = monitor
        self._clock = clock
        self._random = random
        self._suspended = suspended

    def candidates(
        self,
        buyers: Sequence[Buyer],
        winner: str | None,
        record: BrowserRecord,
        pixel_matches: Mapping[str, bytes],
    ) -> list[Buyer]:
        """Eligible buyers before the response-rate throttle, in ``nid`` order."""
        now = int(self._clock())
        expiry = self._settings.match_expiry_days * SECONDS_PER_DAY
        found: list[Buyer] = []
        for buyer in sorted(buyers, key=lambda b: b.nid):
            if buyer.nid == winner or not buyer.pixel_matching or buyer.push_url is None:
                continue
            matched = pixel_matches.get(buyer.nid)
            if matched is not None and matched.isdigit() and now - int(matched) < expiry:
                continue
            cookie_matched = record.gid_time(buyer.nid)  # its own match tag, recently
            if cookie_matched is not None and now - cookie_matched < expiry:
                continue
            pending = record.push_time(buyer.nid)
            if pending is not None and now - pending < self._push.ttl_seconds:
                continue
            found.append(buyer)
        return found

    def select(
        self,
        buyers: Sequence[Buyer],
        *,
        winner: str | None,
        browser_id: bytes,
        record: BrowserRecord,
        pixel_matches: Mapping[str, bytes],
        scheme: str,
        may_sync: Callable[[Buyer], bool] | None = None,
    ) -> PixelMatch | None:
        """The pixel match for this impression, or None; counts issued/throttled pushes.

        ``may_sync`` (the privacy policy's ``sync`` answer for this request) removes the
        candidates that may not be given a match."""
        allowed: list[Buyer] = []
        for buyer in self.candidates(buyers, winner, record, pixel_matches):
            if may_sync is not None and not may_sync(buyer):
                continue
            if self._suspended is not None and self._suspended(buyer.nid):
                self._monitor.count(buyer.nid, Count.PUSHES_SUSPENDED)
                continue
            rate = self._monitor.response_rate(buyer.nid)
            low = rate is not None and rate < MIN_RESPONSE_RATE
            if low and self._random() >= THROTTLED_FRACTION:
                self._monitor.count(buyer.nid, Count.PUSHES_THROTTLED)
                continue
            allowed.append(buyer)
        if not allowed:
            return None
        chosen = allowed[min(int(self._random() * len(allowed)), len(allowed) - 1)]
        assert chosen.push_url is not None
        now = int(self._clock())
        version = self._cipher.version_for(chosen.key_version)
        params = ResponseParams(
            gid=self._cipher.encrypt(browser_id, chosen.nid, version),
            cver=version,
            push=self._push.issue(browser_id, chosen.nid, now),
        )
        self._monitor.count(chosen.nid, Count.PUSHES_ISSUED)
        return PixelMatch(chosen.nid, chosen.push_url.render(scheme, params), now)
