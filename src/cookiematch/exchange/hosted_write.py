"""The hosted match table's write, as both paths of the match tag perform it."""

from __future__ import annotations

import logging

from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.exchange import keys
from cookiematch.protocol.codes import HostedMatchStatus
from cookiematch.storage.base import Store

__all__ = ["store_hosted_match"]

log = logging.getLogger(__name__)


async def store_hosted_match(
    store: Store, browser_id: bytes, nid: str, data: bytes, ttl: int
) -> int | None:
    """Store ``data`` for buyer ``nid`` and the browser, for ``ttl`` seconds, durably (the
    store's own acknowledgement: group commit under ``durability = "ack"``). None when
    stored; ``google_hm``'s internal-error status when the store failed."""
    try:
        await store.set(keys.hosted_match_key(browser_id, nid), data, ttl=ttl)
    except StoreUnavailable:  # the store's guard logs an outage once
        return HostedMatchStatus.INTERNAL_ERROR
    except StorageError:
        log.exception("hosted match write failed for %s", nid)
        return HostedMatchStatus.INTERNAL_ERROR
    return None
