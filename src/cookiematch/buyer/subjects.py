"""What the buyer holds about one of its users, for access and erasure (``privacy/subjects.py``).

The subject is the buyer's user ID as its cookie holds it: 22 characters of unpadded URL-safe
base64 (``buyer/ids.py``). The buyer stores one thing per user: its match with the exchange's
gid, in both directions of the match table (``buyer/matchtable.py``): the reverse entry
(``match_by_uid``) and the forward entry it names (``match_by_gid``). Nothing else is kept
by user: the counters count events, and the bid log keeps no ID (``buyer/bidlog.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cookiematch.buyer.ids import format_uid, parse_uid
from cookiematch.buyer.matchtable import HeldEntry, MatchTable
from cookiematch.clock import Clock
from cookiematch.errors import InvalidSubject
from cookiematch.privacy.subjects import ErasureReport, StoredRecord, SubjectReport

__all__ = ["BY_GID", "BY_UID", "ROLE", "BuyerSubjects"]

ROLE = "buyer"
BY_GID = "match_by_gid"
BY_UID = "match_by_uid"
_KINDS = {"by_gid": BY_GID, "by_uid": BY_UID}


class BuyerSubjects:
    """The buyer's ``SubjectData`` over its match table; ``open_table`` opens that table (once,
    on first use: the layout is recorded in the store)."""

    role = ROLE

    def __init__(self, open_table: Callable[[], Awaitable[MatchTable]], *, clock: Clock) -> None:
        self._open_table = open_table
        self._table: MatchTable | None = None
        self._clock = clock

    async def table(self) -> MatchTable:
        if self._table is None:
            self._table = await self._open_table()
        return self._table

    async def access(self, subject: str) -> SubjectReport:
        uid = _uid(subject)
        table = await self.table()
        now = self._clock()
        records = [_record(table, held, now) for held in await table.held(uid)]
        return SubjectReport(role=ROLE, subject=subject, records=records)

    async def erase(self, subject: str) -> ErasureReport:
        uid = _uid(subject)
        erased = await (await self.table()).erase(uids=(uid,))
        return ErasureReport(
            role=ROLE, subject=subject, erased={BY_GID: erased.by_gid, BY_UID: erased.by_uid}
        )


def _uid(subject: str) -> bytes:
    uid = parse_uid(subject)
    if uid is None:
        raise InvalidSubject(
            f"{subject[:40]!r} is not a buyer user ID (22 characters of unpadded URL-safe base64)"
        )
    return uid


def _record(table: MatchTable, held: HeldEntry, now: float) -> StoredRecord:
    entry = held.entry
    value: object
    if entry is None:
        value = {"unreadable": True}
    else:
        lapses_at = table.lapses_at(entry)
        value = {
            "gid": entry.gid,
            "buyer_uid": format_uid(entry.uid),
            "cver": entry.cver,
            "matched_at": entry.updated_at,
            "used_until": lapses_at,
            "lapsed": lapses_at <= now,
        }
    return StoredRecord(
        kind=_KINDS[held.direction],
        key=held.key,
        field=held.field,
        value=value,
        expires_in_seconds=held.expires_in_seconds,
    )
