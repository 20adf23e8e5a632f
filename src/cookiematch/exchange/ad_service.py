"""Serving one ad slot: who the browser is, the auction, the pixel match (docs/auction.md).

``AdService.serve`` reads what the exchange knows about the browser (its record, hosted
match data, pixel matches, user-list memberships) in one round of concurrent reads, asks the
eligible buyers, picks the winner, picks a pixel match, and writes what changed. A store
failure degrades the ad (no user data, no pixel match); it never fails it.

The request's privacy signals (docs/privacy.md, "Enforcement: the exchange") go to every
buyer in OpenRTB ``regs`` and ``user.consent``, and the policy decides per request and per
buyer: ``store_id`` whether the exchange cookie is used or set at all, ``personalise`` for
each buyer whether its bid request carries user IDs and the full ``device.ip``, ``sync``
whether the pixel-matching buyer may get its match.

Pre-targeting: a buyer with ``require_hosted_match`` is asked only for browsers with its
hosted match data, one with ``require_user_lists`` only for current members of one of those
lists; both need ``personalise`` (without it the exchange uses nothing it holds about the
browser for that buyer). A buyer's bid request carries the browser's current memberships of
that buyer's own lists in ``user.ext.user_lists``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.exchange import keys
from cookiematch.exchange.auction import Auction, Outcome
from cookiematch.exchange.bids import ValidBid
from cookiematch.exchange.browser_record import (
    CREATED,
    BrowserRecord,
    browser_record_key,
    push_field,
    seconds,
)
from cookiematch.exchange.consent import truncate_ip
from cookiematch.exchange.cookie_match import Browser
from cookiematch.exchange.memberships import current_lists
from cookiematch.exchange.model import Buyer, ExchangeSettings, Publisher
from cookiematch.exchange.pixel_matching import PixelMatch, PixelMatcher
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.privacy.openrtb import bid_regs
from cookiematch.privacy.policy import Operation, PrivacyPolicy
from cookiematch.privacy.request import NO_PRIVACY, RequestPrivacy
from cookiematch.privacy.signals import child_directed
from cookiematch.protocol.openrtb import (
    CURRENCY,
    Banner,
    BidRequest,
    Device,
    Imp,
    Regs,
    Site,
    User,
)
from cookiematch.protocol.openrtb import Publisher as SitePublisher
from cookiematch.protocol.userid import UserIdCipher, b64url_nopad
from cookiematch.storage.base import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AdRequest:
    """One ``/ad`` call, parsed."""

    publisher: Publisher
    slot: str
    browser: Browser
    scheme: str
    width: int = 300
    height: int = 250
    page: str | None = None
    user_agent: str | None = None
    ip: str | None = None
    privacy: RequestPrivacy = NO_PRIVACY


@dataclass(frozen=True, slots=True)
class ServedAd:
    """What to render: the winning bid (None: house ad), the pixel match, a cookie to set."""

    winner: ValidBid | None
    pixel_match: PixelMatch | None
    set_browser_id: bytes | None
    outcomes: dict[str, Outcome]


@dataclass(frozen=True, slots=True)
class _Known:
    record: BrowserRecord
    hosted: dict[str, bytes]
    pixel_matches: dict[str, bytes]
    user_lists: frozenset[int] = frozenset()


class AdService:
    """The exchange's ad server for one worker."""

    def __init__(
        self,
        *,
        registry: ExchangeRegistry,
        publishers: Iterable[Publisher],
        store: Store,
        cipher: UserIdCipher,
        auction: Auction,
        pixel_matcher: PixelMatcher,
        settings: ExchangeSettings,
        clock: Clock,
        new_browser_id: Callable[[], bytes],
        new_auction_id: Callable[[], str],
        policy: PrivacyPolicy | None = None,
    ) -> None:
        """``policy`` is the process's one privacy policy (the composition root's); without
        it, the defaults of ``[privacy]``."""
        self._registry = registry
        self._policy = policy or PrivacyPolicy()
        self._publishers = {p.id: p for p in publishers}
        self._store = store
        self._cipher = cipher
        self._auction = auction
        self._matcher = pixel_matcher
        self._settings = settings
        self._clock = clock
        self._new_browser_id = new_browser_id
        self._new_auction_id = new_auction_id

    def publisher(self, publisher_id: str) -> Publisher | None:
        return self._publishers.get(publisher_id)

    async def serve(self, request: AdRequest) -> ServedAd:
        now = int(self._clock())
        coppa = request.publisher.coppa
        signals = child_directed(request.privacy.signals) if coppa else request.privacy.signals
        decide = self._policy.decide
        browser_id, new = request.browser.browser_id, False
        if not decide(Operation.STORE_ID, signals).allowed:
            browser_id = None  # the cookie is neither read nor set: the browser is nobody
        elif browser_id is None and not request.browser.opted_out:
            browser_id, new = self._new_browser_id(), True
        buyers = [b for b in self._registry.buyers() if b.bidder_url is not None]
        known = await self._read(browser_id, buyers, request.publisher) if not new else None
        record = known.record if known else BrowserRecord()
        created = now if new or record.created is None else record.created
        first_seen: asyncio.Task[None] | None = None
        if browser_id is not None and record.created is None:
            # a new cookie, or one set before records existed (its age is then a lower bound);
            # written while the auction runs
            first_seen = asyncio.get_running_loop().create_task(
                self._write(
                    browser_id,
                    {CREATED: seconds(now)},
                    self._settings.cookie_max_age_days * SECONDS_PER_DAY,
                )
            )

        auction_id = self._new_auction_id()
        regs, consent = bid_regs(request.privacy, coppa=coppa)
        truncated_ip: str | None = None
        bidders: list[tuple[Buyer, BidRequest]] = []
        for buyer in buyers:
            personalise = decide(Operation.PERSONALISE, signals, buyer.gvl_vendor_id).allowed
            hosted = known.hosted.get(buyer.nid) if known and personalise else None
            if buyer.require_hosted_match and hosted is None:
                continue  # pre-targeting: only users with hosted match data
            lists = self._lists_of(buyer, known) if personalise else frozenset()
            if buyer.require_user_lists and lists.isdisjoint(buyer.require_user_lists):
                continue  # pre-targeting: only members of one of the lists
            if not self._auction.admit(buyer):
                continue
            if personalise:
                user = self._user(buyer, browser_id, hosted, now - created, consent, lists)
                ip = request.ip
            else:  # no user IDs, the address cut to its network (once per ad request)
                user = User(consent=consent)
                if truncated_ip is None:
                    truncated_ip = truncate_ip(request.ip) or ""  # "": no address
                ip = truncated_ip or None
            bidders.append((buyer, self._bid_request(auction_id, request, user, ip, regs)))
        result = await self._auction.run(bidders, self._settings.auction_timeout_ms / 1000)

        pixel_match = None
        if request.publisher.pixel_matching and browser_id is not None and known is not None:
            pixel_match = self._matcher.select(
                self._registry.buyers(),
                winner=result.winner.nid if result.winner else None,
                browser_id=browser_id,
                record=record,
                pixel_matches=known.pixel_matches,
                scheme=request.scheme,
                may_sync=lambda buyer: decide(Operation.SYNC, signals, buyer.gvl_vendor_id).allowed,
            )
        if pixel_match is not None and browser_id is not None:
            pending = {push_field(pixel_match.nid): seconds(pixel_match.issued_at)}
            await self._write(browser_id, pending, self._settings.push_token_ttl_seconds)
        if first_seen is not None:
            await first_seen
        return ServedAd(result.winner, pixel_match, browser_id if new else None, result.outcomes)

    def _lists_of(self, buyer: Buyer, known: _Known | None) -> frozenset[int]:
        """The browser's current memberships of the buyer's own lists."""
        if known is None or not known.user_lists:
            return frozenset()
        return known.user_lists & self._registry.owned_lists(buyer.nid)

    async def _read(
        self, browser_id: bytes | None, buyers: Sequence[Buyer], publisher: Publisher
    ) -> _Known | None:
        if browser_id is None:
            return None
        hosted_nids = [b.nid for b in buyers if b.hosted_match]
        lists = any(self._registry.owned_lists(b.nid) for b in buyers)
        try:
            fields, hosted, matches, memberships = await asyncio.gather(
                self._store.hgetall(browser_record_key(browser_id)),
                self._store.get_many([keys.hosted_match_key(browser_id, n) for n in hosted_nids]),
                self._store.hgetall(keys.pixel_matches_key(browser_id))
                if publisher.pixel_matching
                else _empty(),
                self._store.hgetall(keys.user_lists_key(browser_id)) if lists else _empty(),
            )
        except StoreUnavailable:  # the store's guard logs an outage once
            return None
        except StorageError as exc:
            log.warning("browser state unavailable, serving without it: %s", exc)
            return None
        return _Known(
            BrowserRecord.parse(fields),
            {nid: data for nid, data in zip(hosted_nids, hosted, strict=True) if data},
            matches,
            current_lists(memberships),
        )

    async def _write(self, browser_id: bytes | None, fields: dict[str, bytes], ttl: int) -> None:
        if browser_id is None:
            return
        try:
            await self._store.hset(browser_record_key(browser_id), fields, ttl=ttl)
        except StoreUnavailable:  # the store's guard logs an outage once
            return
        except StorageError as exc:
            log.warning("browser record not written: %s", exc)

    def _user(
        self,
        buyer: Buyer,
        browser_id: bytes | None,
        hosted: bytes | None,
        age: int,
        consent: str | None,
        lists: frozenset[int] = frozenset(),
    ) -> User:
        if browser_id is None:
            return User(consent=consent)
        version = self._cipher.version_for(buyer.key_version)
        ext: dict[str, object] = {"cookie_version": version, "cookie_age_seconds": max(0, age)}
        if lists:
            ext["user_lists"] = sorted(lists)
        return User(
            id=self._cipher.encrypt(browser_id, buyer.nid, version),
            buyeruid=b64url_nopad(hosted) if hosted else None,
            consent=consent,
            ext=ext,
        )

    def _bid_request(
        self,
        auction_id: str,
        request: AdRequest,
        user: User,
        ip: str | None,
        regs: Regs | None,
    ) -> BidRequest:
        publisher = request.publisher.id
        return BidRequest(
            id=auction_id,
            imp=[
                Imp(
                    id="1",
                    tagid=request.slot,
                    banner=Banner(w=request.width, h=request.height),
                    secure=1 if request.scheme == "https" else 0,
                )
            ],
            site=Site(id=publisher, publisher=SitePublisher(id=publisher), page=request.page),
            device=Device(ua=request.user_agent, ip=ip),
            user=user,
            regs=regs,
            tmax=self._settings.auction_timeout_ms,
            at=1,
            cur=[CURRENCY],
        )


async def _empty() -> dict[str, bytes]:
    return {}
