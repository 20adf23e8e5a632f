"""Adding browsers to a user list in bulk, by the buyer's gids (server to server).

``POST /admin/v1/user_lists/{id}/members`` with ``{"nid", "cver", "gids": [...], "remove":
[...]}``: each gid is decrypted for that buyer and key version to the browser ID, and the
membership is written exactly as a ``google_ula`` match tag writes it
(``exchange/memberships.py``); a removed gid loses the field. An entry of ``gids`` is a gid,
or ``{"gid": ..., "timestamp": <unix seconds>}``: the time the browser was added, with the
seed's meaning (counted from then, bounded by now). The list must exist, be open, and belong
to ``nid`` (a buyer's gids only mean something to that buyer's lists). At most
``MAX_ENTRIES`` gids per request; each gets a status: ``added``, ``removed``, ``expired``
(its time is longer ago than the list's ``membership_days``: not added) or ``invalid`` (does
not decrypt for that buyer and version).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from cookiematch.clock import Clock
from cookiematch.errors import InvalidUserId, NotFound, ValidationFailed
from cookiematch.exchange import keys
from cookiematch.exchange.list_changes import Change, ListChanges
from cookiematch.exchange.memberships import membership
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage.base import Store

MAX_ENTRIES = 1000


class TimedGid(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A gid with the time the browser was added to the list (unix seconds)."""

    gid: str
    timestamp: Annotated[int, msgspec.Meta(ge=0)] | None = None


class MembersRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    nid: str
    cver: int = 1
    gids: list[str | TimedGid] = msgspec.field(default_factory=list)
    remove: list[str] = msgspec.field(default_factory=list)


def parse_members_request(data: object) -> MembersRequest:
    """Validate a decoded JSON body; raise ValidationFailed naming the field."""
    try:
        request = msgspec.convert(data, MembersRequest)
    except msgspec.ValidationError as exc:
        path = str(exc).rpartition(" - at `$.")[2].rstrip("`") or "body"
        raise ValidationFailed(
            "invalid members request", errors=[{"field": path, "message": str(exc)}]
        ) from None
    if len(request.gids) + len(request.remove) > MAX_ENTRIES:
        raise ValidationFailed(
            f"at most {MAX_ENTRIES} gids per request",
            errors=[{"field": "gids", "message": f"gids + remove > {MAX_ENTRIES}"}],
        )
    return request


class MemberStatus(enum.Enum):
    ADDED = "added"
    REMOVED = "removed"
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class MemberResult:
    gid: str
    status: MemberStatus


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    list_id: int
    results: tuple[MemberResult, ...]

    def to_dict(self) -> dict[str, object]:
        counts = {s.value: 0 for s in MemberStatus}
        for result in self.results:
            counts[result.status.value] += 1
        return {
            "user_list": self.list_id,
            **counts,
            "results": [{"gid": r.gid, "status": r.status.value} for r in self.results],
        }


class UserListBulk:
    """Writes user list memberships for many gids of one buyer."""

    def __init__(
        self,
        registry: ExchangeRegistry,
        store: Store,
        cipher: UserIdCipher,
        *,
        clock: Clock,
        changes: ListChanges | None = None,
    ) -> None:
        self._registry = registry
        self._store = store
        self._cipher = cipher
        self._clock = clock
        self._changes = changes

    def _check(self, list_id: int, request: MembersRequest) -> int:
        """The list's ``membership_days``; raise if the request may not change the list."""
        user_list = self._registry.user_list(list_id)
        if user_list is None:
            raise NotFound(f"no user list {list_id}")
        if self._registry.buyer(request.nid) is None:
            raise ValidationFailed(
                "unknown buyer", errors=[{"field": "nid", "message": f"no buyer {request.nid!r}"}]
            )
        if user_list.owner != request.nid:
            message = f"user list {list_id} belongs to another buyer"
            raise ValidationFailed(message, errors=[{"field": "nid", "message": message}])
        if user_list.closed:
            raise ValidationFailed(
                f"user list {list_id} is closed",
                errors=[{"field": "id", "message": "closed lists take no new members"}],
            )
        if not self._cipher.has_version(request.cver):
            raise ValidationFailed(
                "unknown key version",
                errors=[{"field": "cver", "message": f"no key version {request.cver}"}],
            )
        return user_list.membership_days

    def _browser(self, gid: str, request: MembersRequest) -> bytes | None:
        try:
            return self._cipher.decrypt(gid, request.nid, request.cver)
        except InvalidUserId:
            return None

    async def apply(self, list_id: int, request: MembersRequest) -> BulkOutcome:
        days = self._check(list_id, request)
        field = str(list_id)
        now = int(self._clock())
        results: list[MemberResult] = []
        writes: list[Coroutine[Any, Any, None]] = []
        for entry in request.gids:
            gid, at = (entry, None) if isinstance(entry, str) else (entry.gid, entry.timestamp)
            browser = self._browser(gid, request)
            added = membership(at, now, days)
            if browser is None or added is None:
                status = MemberStatus.INVALID if browser is None else MemberStatus.EXPIRED
                results.append(MemberResult(gid, status))
                continue
            key = keys.user_lists_key(browser)
            writes.append(self._store.hset(key, {field: added.field_value}, ttl=added.ttl))
            results.append(MemberResult(gid, MemberStatus.ADDED))
        for gid in request.remove:
            browser = self._browser(gid, request)
            if browser is None:
                results.append(MemberResult(gid, MemberStatus.INVALID))
                continue
            writes.append(self._hdel(keys.user_lists_key(browser), field))
            results.append(MemberResult(gid, MemberStatus.REMOVED))
        await _bounded(writes)
        if self._changes is not None:
            for change in Change:
                done = sum(1 for r in results if r.status.value == change.value)
                self._changes.count(list_id, change, done)
        return BulkOutcome(list_id, tuple(results))

    async def _hdel(self, key: str, field: str) -> None:
        await self._store.hdel(key, [field])


async def _bounded(writes: Sequence[Coroutine[Any, Any, None]], width: int = 256) -> None:
    for start in range(0, len(writes), width):
        await asyncio.gather(*writes[start : start + width])
