"""What the exchange holds about one browser, for access and erasure (``privacy/subjects.py``).

The subject is the browser ID as its cookie carries it (22 characters of base64url). Its keys
share the browser's ``{hash tag}`` (``keys.py``, ``browser_record.py``):

    hm:{tag}:<nid>   hosted match data a buyer stored (one key per buyer that may hold some:
                     ``hosted_nids.py``, and every hosted buyer of the current view)
    ul:{tag}         user-list memberships: list id -> time added
    pm:{tag}         pixel matches: nid -> time recorded
    br:{tag}         the browser record: created, gid:<nid>, push:<nid> -> times
    pu:{tag}:<nid>   the issue time of the push token a buyer returned (for the token's
                     lifetime; one key per buyer with pixel matching)

Access reads them with their remaining lifetimes (times shown as ISO 8601 UTC, hosted data as
text when it is UTF-8, else base64). Erasure deletes them, then queues an opt-out notice for
every buyer with a webhook (``optout_notices.py``) before it returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from cookiematch.errors import InvalidSubject
from cookiematch.exchange import keys
from cookiematch.exchange.browser_record import browser_record_key
from cookiematch.exchange.hosted_nids import HostedNids
from cookiematch.exchange.model import Buyer
from cookiematch.exchange.optout_notices import NoticeQueue
from cookiematch.privacy.subjects import (
    ErasureReport,
    HeldKey,
    SubjectReport,
    erase_held,
    read_held,
    render_bytes,
)
from cookiematch.protocol.cookies import parse_browser_id
from cookiematch.storage.base import Store

__all__ = ["KINDS", "ExchangeSubjects", "render_time"]

HOSTED_MATCH = "hosted_match"
USER_LIST = "user_list"
PIXEL_MATCH = "pixel_match"
BROWSER_RECORD = "browser_record"
PUSH_RETURN = "push_return"
KINDS = (HOSTED_MATCH, USER_LIST, PIXEL_MATCH, BROWSER_RECORD, PUSH_RETURN)


def render_time(raw: bytes) -> object:
    """Unix seconds (ASCII) as ISO 8601 UTC; anything else as ``render_bytes`` shows it."""
    try:
        moment = datetime.fromtimestamp(int(raw), UTC)
    except (ValueError, OverflowError, OSError):
        return render_bytes(raw)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class ExchangeSubjects:
    """The exchange's ``SubjectData``."""

    role = "exchange"

    def __init__(
        self,
        store: Store,
        hosted_nids: HostedNids,
        notices: NoticeQueue,
        buyers: Callable[[], Awaitable[Sequence[Buyer]]],
    ) -> None:
        """``buyers`` answers the buyers of the moment (the server's view, or the
        configuration and the store read afresh for the CLI)."""
        self._store = store
        self._hosted_nids = hosted_nids
        self.notices = notices
        self._buyers = buyers

    @staticmethod
    def browser_id(subject: str) -> bytes:
        """The 16 bytes of a browser ID; ``InvalidSubject`` for anything else."""
        browser_id = parse_browser_id(subject)
        if browser_id is None:
            raise InvalidSubject(
                "an exchange subject is a browser ID: 22 characters of A-Z a-z 0-9 - _"
            )
        return browser_id

    async def _held(self, browser_id: bytes, buyers: Sequence[Buyer]) -> list[HeldKey]:
        """The browser's keys: the field maps, and the hosted-match and push-return keys that
        hold data."""
        nids = await self._hosted_nids.nids()
        nids.update(b.nid for b in buyers if b.hosted_match)
        hosted = [keys.hosted_match_key(browser_id, nid) for nid in sorted(nids)]
        pushing = sorted(b.nid for b in buyers if b.pixel_matching)
        returns = [keys.push_return_key(browser_id, nid) for nid in pushing]
        found = await self._store.get_many([*hosted, *returns])
        live = [key for key, raw in zip([*hosted, *returns], found, strict=True) if raw]
        return [
            *(HeldKey(HOSTED_MATCH, key) for key in live if key.startswith("hm:")),
            *(HeldKey(PUSH_RETURN, key, render=render_time) for key in live if key in returns),
            HeldKey(USER_LIST, keys.user_lists_key(browser_id), is_map=True, render=render_time),
            HeldKey(PIXEL_MATCH, keys.pixel_matches_key(browser_id), is_map=True,
                    render=render_time),
            HeldKey(BROWSER_RECORD, browser_record_key(browser_id), is_map=True,
                    render=render_time),
        ]  # fmt: skip

    async def access(self, subject: str) -> SubjectReport:
        browser_id = self.browser_id(subject)
        held = await self._held(browser_id, await self._buyers())
        return SubjectReport(
            role=self.role, subject=subject, records=await read_held(self._store, held)
        )

    async def erase(self, subject: str) -> ErasureReport:
        """Delete every key of the browser, then queue the notices (stored before this
        returns). A ``StorageError`` may leave it partial; repeating it is safe."""
        browser_id = self.browser_id(subject)
        buyers = await self._buyers()
        held = await self._held(browser_id, buyers)
        erased = dict.fromkeys(KINDS, 0)
        erased.update(await erase_held(self._store, held))
        notified = await self.notices.enqueue(browser_id, buyers)
        return ErasureReport(role=self.role, subject=subject, erased=erased, notified=notified)
