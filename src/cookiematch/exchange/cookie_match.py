"""The Cookie Matching Service: one match tag in, one decision out (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.errors import HostedMatchError, InvalidPushToken, StorageError, StoreUnavailable
from cookiematch.exchange import keys
from cookiematch.exchange.common_match import CommonMatch
from cookiematch.exchange.consent import may_store_and_sync
from cookiematch.exchange.hosted_write import store_hosted_match
from cookiematch.exchange.list_changes import Change, ListChanges
from cookiematch.exchange.memberships import Membership, membership
from cookiematch.exchange.model import Buyer, ExchangeSettings
from cookiematch.exchange.monitoring import BuyerMonitor, Count
from cookiematch.exchange.outcomes import (
    MatchOutcome,
    PushRecorded,
    RedirectToBuyer,
    VerifyCookie,
)
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.exchange.throttle import TokenBuckets
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.privacy.signals import SILENT, ConsentSignals
from cookiematch.protocol.codes import HostedMatchStatus, MatchError, UserListStatus
from cookiematch.protocol.hosted import decode_hosted_match
from cookiematch.protocol.matchtag import MatchTagRequest, UserListAdd
from cookiematch.protocol.push import PushTokens
from cookiematch.protocol.query import QueryParam, encode_query
from cookiematch.protocol.redirect import ResponseParams
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage.base import Store

log = logging.getLogger(__name__)

COOKIE_TEST_PARAM = QueryParam("google_tc", "1")


@dataclass(frozen=True, slots=True)
class Browser:
    """What the exchange cookie says about the browser behind a request."""

    browser_id: bytes | None
    opted_out: bool = False


class CookieMatchService:
    """Decides and performs the operations of a match tag."""

    def __init__(
        self,
        *,
        registry: ExchangeRegistry,
        store: Store,
        cipher: UserIdCipher,
        push_tokens: PushTokens,
        settings: ExchangeSettings,
        clock: Clock,
        new_browser_id: Callable[[], bytes],
        monitor: BuyerMonitor | None = None,
        policy: PrivacyPolicy | None = None,
        list_changes: ListChanges | None = None,
        admit: Callable[[Buyer], bool] | None = None,
        limited: Callable[[Buyer], bool] | None = None,
    ) -> None:
        """``policy`` is the process's one privacy policy (the composition root's); without
        it, the defaults of ``[privacy]``. ``list_changes`` counts the user-list adds.
        ``admit`` says whether a match tag of a buyer fits under its rate
        (``Enforcer.admit_match_tag``); without it, no limit. ``limited`` says, without
        using the allowance, whether a buyer is under a rate (``Enforcer.limits_match_tags``):
        with ``admit`` and without it, there is no common case (``common`` is None)."""
        self._registry = registry
        self._list_changes = list_changes
        self._policy = policy or PrivacyPolicy()
        self._monitor = monitor
        self._store = store
        self._cipher = cipher
        self._push = push_tokens
        self._settings = settings
        self._clock = clock
        self._new_browser_id = new_browser_id
        self._admit = admit
        self._hm_buckets = TokenBuckets(clock)
        self.common: CommonMatch | None = None
        if admit is None or limited is not None:
            self.common = CommonMatch(
                registry=registry,
                cipher=cipher,
                policy=self._policy,
                extras_first=settings.extras_first,
                monitor=monitor,
                limited=limited,
                store=store,
                hosted_ttl=settings.hosted_match_ttl_days * SECONDS_PER_DAY,
            )

    def buyer(self, nid: str) -> Buyer | None:
        return self._registry.buyer(nid)

    async def match(
        self,
        request: MatchTagRequest,
        buyer: Buyer,
        browser: Browser,
        scheme: str,
        signals: ConsentSignals = SILENT,
    ) -> MatchOutcome:
        """Run the match tag for a known buyer; the order of checks is docs/protocol.md's.

        Every operation of a match tag shares an ID with the buyer or takes data from it
        (``sync``), on the exchange cookie (``store_id``): when the policy refuses either
        under ``signals``, nothing is read, written or set and the buyer gets
        ``google_error=1`` (docs/privacy.md)."""
        if request.push is not None and request.cookie_match:
            return self._error(request, buyer, scheme, MatchError.CONFLICT)
        if not request.has_operation:
            return self._error(request, buyer, scheme, MatchError.NO_OPERATION)
        if not may_store_and_sync(self._policy, signals, buyer.gvl_vendor_id):
            return self._error(request, buyer, scheme, MatchError.OPTED_OUT, refused=True)
        if browser.opted_out:
            return self._error(request, buyer, scheme, MatchError.OPTED_OUT)
        pushing = request.push is not None or request.push_duplicated
        if self._admit is not None and not pushing and not self._admit(buyer):
            return self._limited(request, buyer, scheme)
        if browser.browser_id is None:
            wants_cookie = (
                request.set_cookie
                if request.set_cookie is not None
                else self._settings.set_cookie_by_default
            )
            if request.cookie_test or not wants_cookie or request.push is not None:
                return self._error(request, buyer, scheme, MatchError.NO_COOKIE)
            query = encode_query((*request.params, COOKIE_TEST_PARAM))
            return VerifyCookie(buyer.nid, self._new_browser_id(), query)
        if pushing:
            return await self._push_return(request, buyer, browser.browser_id, scheme)
        return await self._redirect_with_results(request, buyer, browser.browser_id, scheme)

    async def _redirect_with_results(
        self, request: MatchTagRequest, buyer: Buyer, browser_id: bytes, scheme: str
    ) -> RedirectToBuyer:
        now = int(self._clock())
        # gather() costs two tasks and several loop iterations: only when both have work
        hm_status: int | None = None
        ula_statuses: tuple[tuple[str, int], ...] = ()
        has_hm = request.hosted_match is not None or request.hosted_match_duplicated
        if has_hm and request.user_list_adds:
            hm_status, ula_statuses = await asyncio.gather(
                self._write_hosted_match(request, buyer, browser_id),
                self._add_to_user_lists(request.user_list_adds, buyer, browser_id, now),
            )
        elif has_hm:
            hm_status = await self._write_hosted_match(request, buyer, browser_id)
        elif request.user_list_adds:
            ula_statuses = await self._add_to_user_lists(
                request.user_list_adds, buyer, browser_id, now
            )
        gid = cver = None
        if request.cookie_match:
            cver = self._cipher.version_for(buyer.key_version)
            gid = self._cipher.encrypt(browser_id, buyer.nid, cver)
            if self._monitor is not None:  # frequency-capping monitoring, off the hot path
                self._monitor.gid_issued(buyer.nid, browser_id, new_cookie=request.cookie_test)
        response = ResponseParams(
            gid=gid, cver=cver, user_lists=ula_statuses, hosted_match=hm_status
        )
        location = buyer.redirect_url.render(
            scheme, response, request.extras, extras_first=self._settings.extras_first
        )
        return RedirectToBuyer(
            buyer.nid,
            location,
            extras_dropped=request.extras_dropped,
            hosted_match_status=hm_status,
        )

    async def _push_return(
        self, request: MatchTagRequest, buyer: Buyer, browser_id: bytes, scheme: str
    ) -> PushRecorded | RedirectToBuyer:
        now = int(self._clock())
        try:
            if request.push is None or request.push_duplicated:
                raise InvalidPushToken("google_push missing or duplicated")
            claim = self._push.verify(request.push, buyer.nid, now)
        except InvalidPushToken:
            return self._error(request, buyer, scheme, MatchError.INVALID_PUSH)
        if claim.browser_id != browser_id:
            return self._error(request, buyer, scheme, MatchError.INVALID_PUSH)
        try:
            first_use = await self._mark_used(browser_id, buyer.nid, claim.issued_at, now)
        except StorageError as exc:
            if not isinstance(exc, StoreUnavailable):  # the store's guard logs an outage once
                log.warning("pixel match for %s not recorded: %s", buyer.nid, exc)
            return PushRecorded(buyer.nid, stored=False)
        if not first_use:
            return self._error(request, buyer, scheme, MatchError.INVALID_PUSH, replayed=True)
        results = await asyncio.gather(
            self._store.hset(
                keys.pixel_matches_key(browser_id),
                {buyer.nid: str(now).encode()},
                ttl=self._settings.match_expiry_days * SECONDS_PER_DAY,
            ),
            self._write_hosted_match(request, buyer, browser_id),
            self._add_to_user_lists(request.user_list_adds, buyer, browser_id, now),
            return_exceptions=True,
        )
        stored = not isinstance(results[0], BaseException)
        if self._monitor is not None:
            self._monitor.push_returned(buyer.nid, browser_id)
        if not stored and not isinstance(results[0], StoreUnavailable):
            log.warning("pixel match for %s not recorded: %s", buyer.nid, results[0])
        return PushRecorded(buyer.nid, stored)

    async def _mark_used(self, browser_id: bytes, nid: str, issued_at: int, now: int) -> bool:
        """Whether this is the first use of a token issued at ``issued_at`` to ``nid`` for this
        browser. The mark holds the issue time of the last token used, for that token's
        remaining lifetime: a token is accepted if none is marked (atomically, across
        workers) or if it was issued after the marked one (a page with several ad slots may
        be given two tokens), so each is accepted once, in the order they were issued."""
        key = keys.push_return_key(browser_id, nid)
        mark = str(issued_at).encode()
        ttl = issued_at + self._push.ttl_seconds - now  # the token's remaining lifetime
        if await self._store.set_if_absent(key, mark, ttl=ttl):
            return True
        held = await self._store.get(key)
        if held is not None and not (held.isdigit() and int(held) < issued_at):
            return False  # this token, or a later one, was used
        await self._store.set(key, mark, ttl=ttl)
        return True

    async def _write_hosted_match(
        self, request: MatchTagRequest, buyer: Buyer, browser_id: bytes
    ) -> int | None:
        """None on success or when absent; otherwise the google_hm status."""
        if request.hosted_match_duplicated:
            return HostedMatchStatus.DECODE_ERROR
        if request.hosted_match is None:
            return None
        if not buyer.hosted_match:
            return HostedMatchStatus.FORBIDDEN
        try:
            data = decode_hosted_match(request.hosted_match)
        except HostedMatchError as exc:
            return exc.status
        rate = buyer.hosted_match_writes_per_second
        if rate is not None and not self._hm_buckets.allow(buyer.nid, rate):
            return HostedMatchStatus.THROTTLED
        ttl = self._settings.hosted_match_ttl_days * SECONDS_PER_DAY
        return await store_hosted_match(self._store, browser_id, buyer.nid, data, ttl)

    async def _add_to_user_lists(
        self, adds: tuple[UserListAdd, ...], buyer: Buyer, browser_id: bytes, now: int
    ) -> tuple[tuple[str, int], ...]:
        if not adds:
            return ()
        statuses: list[tuple[str, int]] = []
        accepted: dict[int, Membership | None] = {}  # None: an add whose time is too old
        for add in adds:
            status = self._user_list_status(add, buyer)
            statuses.append((add.raw_id, status))
            if status == UserListStatus.OK and add.list_id is not None:
                user_list = self._registry.user_list(add.list_id)
                days = user_list.membership_days if user_list else 30
                accepted[add.list_id] = membership(add.timestamp, now, days)
        live = {list_id: m for list_id, m in accepted.items() if m is not None}
        try:
            if live:
                await self._write_memberships(browser_id, live)
        except StorageError as exc:
            if not isinstance(exc, StoreUnavailable):  # the store's guard logs an outage once
                log.exception("user list write failed for %s", buyer.nid)
            return tuple(
                (raw, UserListStatus.INTERNAL_ERROR if status == UserListStatus.OK else status)
                for raw, status in statuses
            )
        if self._list_changes is not None:
            for list_id, added in accepted.items():
                self._list_changes.count(list_id, Change.ADDED if added else Change.EXPIRED)
        return tuple(statuses)

    async def _write_memberships(self, browser_id: bytes, live: dict[int, Membership]) -> None:
        key = keys.user_lists_key(browser_id)
        by_ttl: dict[int, dict[str, bytes]] = {}
        for list_id, added in live.items():
            by_ttl.setdefault(added.ttl, {})[str(list_id)] = added.field_value
        await asyncio.gather(
            *(self._store.hset(key, fields, ttl=ttl) for ttl, fields in by_ttl.items())
        )

    def _user_list_status(self, add: UserListAdd, buyer: Buyer) -> int:
        if add.list_id is None:
            return UserListStatus.BAD_LIST_ID
        user_list = self._registry.user_list(add.list_id)
        if user_list is None:
            return UserListStatus.BAD_LIST_ID
        if user_list.owner != buyer.nid:
            return UserListStatus.PERMISSION_DENIED
        if user_list.closed:
            return UserListStatus.CLOSED
        return UserListStatus.OK

    def _limited(self, request: MatchTagRequest, buyer: Buyer, scheme: str) -> RedirectToBuyer:
        """Over the buyer's match-tag rate: the redirect without a gid, each write refused
        with the status the document gives a write that was not done (docs/protocol.md)."""
        if self._monitor is not None:
            self._monitor.count(buyer.nid, Count.MATCH_TAGS_LIMITED)
        has_hm = request.hosted_match is not None or request.hosted_match_duplicated
        response = ResponseParams(
            user_lists=tuple(
                (add.raw_id, int(UserListStatus.INTERNAL_ERROR)) for add in request.user_list_adds
            ),
            hosted_match=HostedMatchStatus.THROTTLED if has_hm else None,
        )
        location = buyer.redirect_url.render(
            scheme, response, request.extras, extras_first=self._settings.extras_first
        )
        return RedirectToBuyer(
            buyer.nid, location, extras_dropped=request.extras_dropped, limited=True
        )

    def _error(
        self,
        request: MatchTagRequest,
        buyer: Buyer,
        scheme: str,
        error: MatchError,
        *,
        refused: bool = False,
        replayed: bool = False,
    ) -> RedirectToBuyer:
        location = buyer.redirect_url.render(
            scheme,
            ResponseParams(error=int(error)),
            request.extras,
            extras_first=self._settings.extras_first,
        )
        return RedirectToBuyer(
            buyer.nid,
            location,
            error=int(error),
            extras_dropped=request.extras_dropped,
            privacy_refused=refused,
            push_replayed=replayed,
        )
