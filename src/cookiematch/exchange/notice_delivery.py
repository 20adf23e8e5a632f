"""Delivery of the queued opt-out notices (``optout_notices.py``): a background task of every
exchange worker.

    every POLL_SECONDS (sooner when this worker queued a notice):
      for each buyer with notices queued, side by side: read its queue (depth); when one is due
        claim the buyer's lease (storage/lease.py; one worker per buyer at a time)
        POST each due notice, signed (protocol/optout_notice.py ``sign``), CONCURRENCY at once
          2xx                 delivered: removed from the queue
          anything else       a failed attempt: due again after Backoff(first, max, jitter)
          past give_up        abandoned: removed, counted and logged
        release the lease

A notice is delivered at least once: a worker that dies between a buyer's 2xx and the removal
sends it again later, with the same ``id``. A buyer without a webhook (removed, or its webhook
taken away) counts as a failed attempt until the notice is abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Callable, Mapping
from typing import Protocol

from cookiematch.clock import Clock
from cookiematch.errors import LeaseLost, StoreUnavailable
from cookiematch.exchange.model import Buyer, ExchangeSettings
from cookiematch.exchange.optout_notices import NoticeQueue, QueuedNotice
from cookiematch.protocol.optout_notice import SIGNATURE_HEADER, encode_notice, sign
from cookiematch.retry import Backoff
from cookiematch.storage.base import Store
from cookiematch.storage.lease import Lease

__all__ = ["NoticeDelivery", "NoticeEvent", "NoticeTransport", "lease_key"]

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
LEASE_SECONDS = 15.0
POST_TIMEOUT = 5.0
CONCURRENCY = 8
ROUND_LIMIT = 256  # notices of one buyer per lease claim


class NoticeTransport(Protocol):
    """POSTs one notice; answers the status, raises ``TimeoutError`` or ``ConnectionError``."""

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> int: ...


class NoticeEvent(enum.StrEnum):
    """What happens to notices, counted per buyer."""

    QUEUED = "queued"
    DELIVERED = "delivered"
    FAILED_ATTEMPT = "failed_attempt"
    ABANDONED = "abandoned"


def lease_key(nid: str) -> str:
    return f"optq:lease:{{{nid}}}"


class NoticeDelivery:
    """Sends the notices of every buyer's queue; ``run`` until cancelled."""

    def __init__(
        self,
        queue: NoticeQueue,
        store: Store,
        buyer: Callable[[str], Buyer | None],
        transport: NoticeTransport,
        settings: ExchangeSettings,
        *,
        clock: Clock,
        holder: str,
        rand: Callable[[], float] = random.random,
        on_event: Callable[[str, NoticeEvent], None] | None = None,
        on_depth: Callable[[str, int], None] | None = None,
        poll_seconds: float = POLL_SECONDS,
        wake: asyncio.Event | None = None,
    ) -> None:
        """``buyer`` looks a buyer up in the worker's current view; ``holder`` names this
        worker in the leases; ``on_event`` and ``on_depth`` count (metrics); setting ``wake``
        starts a pass at once (the queue's ``on_queued`` does)."""
        self._queue = queue
        self._store = store
        self._buyer = buyer
        self._transport = transport
        self._backoff = Backoff(
            settings.optout_notice_retry_first_seconds,
            settings.optout_notice_retry_max_seconds,
            jitter=True,
        )
        self._clock = clock
        self._holder = holder
        self._rand = rand
        self._on_event = on_event
        self._on_depth = on_depth
        self._poll = poll_seconds
        self._wake = wake or asyncio.Event()

    def wake(self) -> None:
        """Look at the queues now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver what is due, then wait for the next poll or a wake-up; forever."""
        while True:
            try:
                await self.deliver_due()
            except StoreUnavailable:  # the store's guard logs an outage once
                pass
            except Exception:
                log.exception("opt-out notice delivery failed; retrying at the next poll")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()

    def _due(self, queued: QueuedNotice, now: float) -> bool:
        return queued.next_attempt_at <= now or self._queue.expired(queued)

    async def deliver_due(self) -> None:
        """One pass over every buyer's queue (the buyers side by side: a slow one does not
        hold up the others)."""
        nids = await self._queue.nids()
        results = await asyncio.gather(*(self._pass(nid) for nid in nids), return_exceptions=True)
        for nid, result in zip(nids, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, StoreUnavailable):
                log.error("opt-out notices for %s: pass failed: %s", nid, result)

    async def _pass(self, nid: str) -> None:
        pending = await self._queue.pending(nid)
        self._depth(nid, len(pending))
        now = self._clock()
        if not any(self._due(queued, now) for queued in pending):
            return
        lease = Lease(self._store, lease_key(nid), self._holder, ttl=LEASE_SECONDS,
                      clock=self._clock)  # fmt: skip
        if not await lease.claim():
            return  # another worker is delivering this buyer's notices
        try:
            await lease.run(self._round(nid))
        except LeaseLost as exc:
            log.warning("opt-out notices for %s: %s", nid, exc)
        finally:
            await lease.release()

    async def _round(self, nid: str) -> None:
        """Under the buyer's lease: every due notice, read again, attempted once."""
        pending = await self._queue.pending(nid)
        now = self._clock()
        due = [queued for queued in pending if self._due(queued, now)][:ROUND_LIMIT]
        buyer = self._buyer(nid)
        settled = 0
        for start in range(0, len(due), CONCURRENCY):
            chunk = due[start : start + CONCURRENCY]
            results = await asyncio.gather(
                *(self._attempt(buyer, queued) for queued in chunk), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    log.error("opt-out notice for %s not settled: %s", nid, result)
                elif result:
                    settled += 1
        self._depth(nid, len(pending) - settled)

    async def _attempt(self, buyer: Buyer | None, queued: QueuedNotice) -> bool:
        """Send one notice; True when it left the queue (delivered or abandoned)."""
        nid = queued.notice.nid
        if self._queue.expired(queued):
            await self._queue.remove(queued)
            self._count(nid, NoticeEvent.ABANDONED)
            log.warning(
                "opt-out notice %s for %s abandoned after %d attempts",
                queued.notice.id, nid, queued.attempts,
            )  # fmt: skip
            return True
        url = buyer.optout_webhook_url if buyer is not None else None
        secret = buyer.optout_webhook_secret if buyer is not None else None
        if url is None or secret is None:
            reason = "the buyer has no optout_webhook_url"
        else:
            body = encode_notice(queued.notice)
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(secret.reveal().encode(), body, int(self._clock())),
            }
            try:
                status = await self._transport.post(url, body, headers, POST_TIMEOUT)
            except (TimeoutError, ConnectionError) as exc:
                reason = str(exc)
            else:
                if 200 <= status < 300:
                    await self._queue.remove(queued)
                    self._count(nid, NoticeEvent.DELIVERED)
                    return True
                reason = f"answered {status}"
        delay = self._backoff.delay(queued.attempts + 1, rand=self._rand)
        await self._queue.retry_later(queued, delay)
        self._count(nid, NoticeEvent.FAILED_ATTEMPT)
        log.info(
            "opt-out notice %s for %s: attempt %d failed (%s); next in %.1f s",
            queued.notice.id, nid, queued.attempts + 1, reason, delay,
        )  # fmt: skip
        return False

    def _count(self, nid: str, event: NoticeEvent) -> None:
        if self._on_event is not None:
            self._on_event(nid, event)

    def _depth(self, nid: str, depth: int) -> None:
        if self._on_depth is not None:
            self._on_depth(nid, depth)
