"""The durable queue of opt-out notices to buyers (``protocol/optout_notice.py``).

An erasure queues one notice per buyer that has an ``optout_webhook_url``, before the opt-out
is answered: the write is awaited (with ``Durability.ACK``, committed) so a crash right after
the answer loses no notice. ``notice_delivery.py`` sends them.

    optq:{<nid>}     field map: notice id -> the queued notice (JSON: ``QueuedNotice``)
    optq:nids        field map: nid -> last time a notice was queued for it: the queues to poll

Every operation touches one key, so the layout holds on Redis Cluster. A queued notice's field
lives ``give_up`` plus a day: the deliverer abandons it (counted and logged) at ``give_up``;
the extra day only bounds what is left if no deliverer runs at all. Index fields live as long
as the longest notice they point to, and are never removed early (a removal racing a new
notice would hide it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import msgspec

from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.exchange.model import Buyer, ExchangeSettings
from cookiematch.protocol.optout_notice import OptOutNotice
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage.base import FieldWrite, Store

__all__ = ["INDEX_KEY", "NoticeQueue", "QueuedNotice", "queue_key"]

log = logging.getLogger(__name__)

INDEX_KEY = "optq:nids"
KEEP_AFTER_GIVE_UP = SECONDS_PER_DAY


def queue_key(nid: str) -> str:
    return f"optq:{{{nid}}}"


class QueuedNotice(msgspec.Struct, frozen=True, kw_only=True):
    """A notice waiting for delivery: what is sent, and its retry state."""

    notice: OptOutNotice
    queued_at: float
    attempts: int = 0
    next_attempt_at: float


_decoder = msgspec.json.Decoder(QueuedNotice)


class NoticeQueue:
    """Queues, reads and settles the notices of every buyer."""

    def __init__(
        self,
        store: Store,
        cipher: UserIdCipher,
        settings: ExchangeSettings,
        *,
        clock: Clock,
        new_id: Callable[[], str],
        on_queued: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        """``on_queued`` is told the nids of each batch once it is stored (metrics, waking
        the deliverer)."""
        self._store = store
        self._cipher = cipher
        self.give_up_seconds = settings.optout_notice_give_up_days * SECONDS_PER_DAY
        self._clock = clock
        self._new_id = new_id
        self._on_queued = on_queued

    @property
    def _ttl(self) -> float:
        return self.give_up_seconds + KEEP_AFTER_GIVE_UP

    def gids(self, browser_id: bytes, nid: str) -> list[str]:
        """The browser's gid for ``nid`` under every key version held, the current first."""
        versions = sorted(self._cipher.versions, reverse=True)
        return [self._cipher.encrypt(browser_id, nid, version) for version in versions]

    async def enqueue(self, browser_id: bytes, buyers: Iterable[Buyer]) -> list[str]:
        """One notice per buyer of ``buyers`` with a webhook, stored before this returns;
        the nids notified."""
        now = self._clock()
        writes: list[FieldWrite] = []
        nids: list[str] = []
        for buyer in buyers:
            if buyer.optout_webhook_url is None:
                continue
            notice = OptOutNotice(
                id=self._new_id(),
                nid=buyer.nid,
                google_gids=self.gids(browser_id, buyer.nid),
                time=int(now),
            )
            queued = QueuedNotice(notice=notice, queued_at=now, next_attempt_at=now)
            writes.append(
                (queue_key(buyer.nid), {notice.id: msgspec.json.encode(queued)}, self._ttl)
            )
            nids.append(buyer.nid)
        if not writes:
            return []
        stamp = str(int(now)).encode()
        writes.append((INDEX_KEY, dict.fromkeys(nids, stamp), self._ttl))
        await self._store.hset_many(writes)
        if self._on_queued is not None:
            self._on_queued(nids)
        return nids

    async def nids(self) -> list[str]:
        """The buyers that may have notices queued."""
        return sorted(await self._store.hgetall(INDEX_KEY))

    async def pending(self, nid: str) -> list[QueuedNotice]:
        """The notices queued for ``nid``, oldest first (a field that does not decode is
        dropped: it could never be sent)."""
        found: list[QueuedNotice] = []
        for notice_id, raw in (await self._store.hgetall(queue_key(nid))).items():
            try:
                found.append(_decoder.decode(raw))
            except msgspec.DecodeError as exc:
                log.error(
                    "opt-out notice %s for %s does not decode, dropped: %s", notice_id, nid, exc
                )
                await self._store.hdel(queue_key(nid), [notice_id])
        return sorted(found, key=lambda q: q.queued_at)

    async def retry_later(self, queued: QueuedNotice, delay: float) -> QueuedNotice:
        """Record a failed attempt; the notice is due again ``delay`` seconds from now."""
        now = self._clock()
        later = msgspec.structs.replace(
            queued, attempts=queued.attempts + 1, next_attempt_at=now + delay
        )
        ttl = max(1.0, queued.queued_at + self._ttl - now)
        key = queue_key(queued.notice.nid)
        await self._store.hset(key, {queued.notice.id: msgspec.json.encode(later)}, ttl=ttl)
        return later

    async def remove(self, queued: QueuedNotice) -> None:
        """The notice is settled (delivered or abandoned)."""
        await self._store.hdel(queue_key(queued.notice.nid), [queued.notice.id])

    def expired(self, queued: QueuedNotice) -> bool:
        """Whether the notice is past ``give_up`` and must be abandoned."""
        return self._clock() - queued.queued_at >= self.give_up_seconds
