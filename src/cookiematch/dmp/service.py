"""The DMP's use cases: one call per browser-facing endpoint, each returning a value.

The HTTP layer parses the request (protocol), calls one method, and renders what it gets;
every method also counts its step of the funnel.

Privacy: ``consent`` reads a request's signals once and asks the policy whether the DMP cookie
may be used (``STORE_ID``); the handler reads the cookie only if so, and passes the answer to
the use case, which asks the policy for each partner and each of the client's other tags
(``SYNC``), and for the browser's audiences (``PERSONALISE``). Under GDPR the answers are kept
on the profile as consent marks (``dmp/consent.py``), with those for the export destinations'
vendors, for ingestion and exports to read. docs/privacy.md, "Enforcement: the DMP".
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.dmp.audiences import audience_kv
from cookiematch.dmp.change_marks import MARKING, ChangeMarks
from cookiematch.dmp.chooser import SyncDecision, SyncStatus, by_priority, choose
from cookiematch.dmp.consent import HOST, ConsentMarks, RequestConsent, vendor_party
from cookiematch.dmp.events import EventLog, ImpressionEvent
from cookiematch.dmp.funnel import Funnel, FunnelReport, report
from cookiematch.dmp.funnel_log import FunnelLog, read_total
from cookiematch.dmp.inband import InbandData, parse_kv
from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.model import Client, DmpSettings, Partner
from cookiematch.dmp.partner_ids import PartnerIdReader
from cookiematch.dmp.profiles import Profile, Profiles, TraitSource
from cookiematch.dmp.segments.membership import Memberships
from cookiematch.dmp.traits.writes import TraitStore
from cookiematch.errors import QueryError, StorageError, StoreUnavailable
from cookiematch.privacy.policy import Decision, Operation, PrivacyPolicy, Reason
from cookiematch.privacy.signals import ConsentSignals, decode_signals
from cookiematch.protocol.privacy import PrivacySignals
from cookiematch.protocol.templates import MacroValues
from cookiematch.storage.base import Store

OnMatch = Callable[[str, str, str], Awaitable[object]]
"""Called with (partner id, partner uid, DMP uid) after a match is stored."""


class WaitingRecords(Protocol):
    """What waits for a partner uid's sync (``dmp/ingest/pending.py``): read in the match's
    own store call (``MatchTable.record``'s ``read_after``), applied when there is some."""

    def waiting_key(self, partner_id: str, partner_uid: str) -> str:
        """The map that holds what waits for this partner uid."""

    async def resolve_found(
        self, partner_id: str, partner_uid: str, dmp_uid: str, found: Mapping[str, bytes]
    ) -> int:
        """Apply ``found`` (that map, read after the match was stored); how many records."""


log = logging.getLogger(__name__)


class CallbackStatus(enum.Enum):
    STORED = "stored"
    # a partner-initiated sync (``Partner.initiates_sync``), first hop: the browser has no DMP
    # cookie; set one (``initiated``) and redirect to this callback with the cookie test marker
    VERIFY_COOKIE = "verify_cookie"
    # its second hop without the cookie: the browser refuses third-party cookies
    COOKIE_REFUSED = "cookie_refused"
    UNKNOWN_PARTNER = "unknown_partner"
    NO_COOKIE = "no_cookie"
    MISSING_UID = "missing_uid"
    MACRO_NOT_REPLACED = "macro_not_replaced"  # the partner sent our uid macro back as is
    BAD_ID = "bad_id"  # malformed, forged or stale partner ID
    BAD_DATA = "bad_data"  # in-band key-values that do not parse
    PRIVACY = "privacy"  # the signals refuse the DMP cookie or this partner


@dataclass(frozen=True, slots=True)
class SyncResult:
    dmp_uid: str | None  # None: the DMP cookie is refused (``store_id``), the browser unknown
    new_browser: bool
    pixels: tuple[str, ...]
    decision: SyncDecision
    store_id: Decision
    tags: Mapping[str, Decision]  # the client's other tags: the policy's answer for each

    @property
    def storage(self) -> bool:
        """May the container tag keep state in the page's storage (its frequency caps)? As
        the DMP cookie: the host's own storage (``store_id``)."""
        return self.store_id.allowed

    def allowed_tags(self) -> list[str]:
        return [tag for tag, decision in self.tags.items() if decision.allowed]

    def refused_tags(self) -> dict[str, Reason]:
        return {tag: d.reason for tag, d in self.tags.items() if not d.allowed}


@dataclass(frozen=True, slots=True)
class AudienceAnswer:
    kv: dict[str, list[str]]
    refused: Reason | None = None  # why the policy gave no audiences


class DmpService:
    """Partners, clients and the store, behind one object per worker."""

    def __init__(
        self,
        store: Store,
        settings: DmpSettings,
        partners: Sequence[Partner],
        clients: Sequence[Client],
        *,
        matches: MatchTable,
        traits: TraitStore,
        profile_reader: TraitSource,
        memberships: Memberships,
        policy: PrivacyPolicy,
        export_vendors: Collection[int] = (),
        on_match: Sequence[OnMatch] = (),
        waiting: WaitingRecords | None = None,
        clock: Clock,
        new_uid: Callable[[], str],
        worker: str,
        funnel: Funnel | None = None,
        marks: ChangeMarks = MARKING,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.export_vendors = tuple(sorted(set(export_vendors)))  # marked for the exports
        self.replace_partners(partners)
        self.clients: Mapping[str, Client] = {c.id: c for c in clients}
        self._clock = clock
        self._new_uid = new_uid
        self.matches = matches
        self.events = EventLog(
            store,
            max_per_profile=settings.max_events_per_profile,
            ttl_seconds=settings.event_ttl_days * SECONDS_PER_DAY,
            marks=marks,
        )
        self.inband_data = InbandData(store, settings.match_ttl_days * SECONDS_PER_DAY)
        self.consent_marks = ConsentMarks(store, settings.match_ttl_days * SECONDS_PER_DAY, marks)
        self.traits = traits
        self.profile_reader = profile_reader
        self.profiles = Profiles(
            matches, self.events, self.inband_data, memberships, profile_reader, self.consent_marks
        )
        self.on_match = tuple(on_match)  # called after a match is stored
        self.waiting = waiting  # ingested records that waited, read with the match's write
        self.funnel = Funnel() if funnel is None else funnel  # e.g. shared with /metrics
        self.funnel_log = FunnelLog(store, worker, self.funnel, clock=clock)

    def replace_partners(self, partners: Sequence[Partner]) -> None:
        """Serve ``partners`` from now on (the admin API changed them): the look-ups a request
        makes stay plain mappings, replaced whole."""
        self.partners: Mapping[str, Partner] = {p.id: p for p in partners}
        self._ordered = by_priority(partners)
        self._readers = {p.id: PartnerIdReader(p) for p in partners}

    def client(self, client_id: str | None) -> Client | None:
        return self.clients.get(client_id) if client_id else None

    def new_uid(self) -> str:
        return self._new_uid()

    def tag_served(self, client: Client) -> None:
        self.funnel.client(client.id, "tag_js")

    def consent(self, params: PrivacySignals, sec_gpc: str | None = None) -> RequestConsent:
        """Well-formed parameters' signals decoded once, and ``judge``d."""
        return self.judge(params, decode_signals(params, sec_gpc))

    def judge(self, params: PrivacySignals, signals: ConsentSignals) -> RequestConsent:
        """A request's signals (``params``: the well-formed parameters, which the partners'
        sync URLs carry) and whether the DMP cookie may be set or read."""
        return RequestConsent(params, signals, self.policy.decide(Operation.STORE_ID, signals))

    async def sync(
        self, client: Client, dmp_uid: str | None, consent: RequestConsent
    ) -> SyncResult:
        """The pixels one page should fire (a new DMP ID when the browser has none). Without
        ``STORE_ID`` the browser stays unknown: no ID, no pixel (a partner's callback could not
        be stored), every partner refused for the cookie's reason."""
        now = self._clock()
        store_id = consent.store_id
        new_browser = False
        synced_at: dict[str, float] = {}
        if not store_id.allowed:
            dmp_uid = None
        elif dmp_uid is None:
            dmp_uid, new_browser = self._new_uid(), True
        else:
            synced_at = {p: m.at for p, m in (await self.matches.partners(dmp_uid)).items()}
        allow = self._sync_allowed(consent)
        decision = choose(
            self._ordered,
            client,
            synced_at,
            now=now,
            limit=self.settings.max_syncs_per_page,
            allow=lambda partner: allow(partner.gvl_vendor_id),
        )
        tags = {tag.id: allow(tag.gvl_vendor_id) for tag in client.tags}
        pixels: tuple[str, ...] = ()
        if dmp_uid is not None:
            pixels = tuple(
                partner.sync.render(
                    MacroValues(
                        self.settings.callback_url(partner, client.id, consent.params),
                        dmp_uid,
                        consent.params,
                    )
                )
                for partner in decision.chosen
            )
            if store_id.reason is Reason.CONSENTED:  # GDPR applies: each answer is marked
                answers = {
                    s.partner: s.status is not SyncStatus.PRIVACY
                    for s in decision.statuses
                    if s.reason is not None
                }
                await self.consent_marks.record(
                    dmp_uid, {**self._host_answers(consent), **answers}, consent.signals, now
                )
        self.funnel.client(client.id, "tags_loaded")
        if pixels:
            self.funnel.client(client.id, "pixels", len(pixels))
        for partner in decision.chosen:
            self.funnel.partner(partner.id, "pixels")
        return SyncResult(dmp_uid, new_browser, pixels, decision, store_id, tags)

    async def withdraw(self, dmp_uid: str, consent: RequestConsent) -> None:
        """The signals refuse the DMP cookie (``store_id``, a GDPR refusal) to a browser that
        holds one: its profile is marked refused (``HOST``), so ingestion and exports leave it
        out until a later request consents again. The cookie is read for this alone."""
        if consent.store_id.allowed:
            return
        await self.consent_marks.record(dmp_uid, {HOST: False}, consent.signals, self._clock())

    def _sync_allowed(self, consent: RequestConsent) -> Callable[[int | None], Decision]:
        """The question for a partner or another tag, by its GVL vendor ID: the policy's
        ``SYNC`` answer, or the DMP cookie's refusal for all of them."""
        store_id = consent.store_id
        if not store_id.allowed:
            return lambda _vendor: store_id
        policy, signals = self.policy, consent.signals
        return lambda vendor_id: policy.decide(Operation.SYNC, signals, vendor_id)

    def _host_answers(self, consent: RequestConsent) -> dict[str, bool]:
        """Under a consented DMP cookie: its mark, and whether each export destination's
        vendor may receive the browser's segments (``SYNC`` and ``PERSONALISE``)."""
        policy, signals = self.policy, consent.signals
        answers = {HOST: True}
        for vendor in self.export_vendors:
            answers[vendor_party(vendor)] = all(
                policy.decide(op, signals, vendor).allowed
                for op in (Operation.SYNC, Operation.PERSONALISE)
            )
        return answers

    def _check(
        self,
        partner_id: str,
        dmp_uid: str | None,
        raw_uid: str | None,
        consent: RequestConsent,
        *,
        cookie_test: bool | None = None,
    ) -> tuple[Partner | None, str | None, CallbackStatus | None]:
        """The partner, its opened ID, and why the request is not stored (None: store it).
        ``cookie_test``: None where a partner cannot initiate a sync (in-band data), else
        whether the request carries the cookie test marker (the second hop)."""
        partner = self.partners.get(partner_id)
        if partner is None:
            self.funnel.other("unknown_partner")
            return None, None, CallbackStatus.UNKNOWN_PARTNER
        status: CallbackStatus | None = None
        uid: str | None = None
        if (
            not consent.store_id.allowed
            or not self.policy.decide(
                Operation.SYNC, consent.signals, partner.gvl_vendor_id
            ).allowed
        ):
            status = CallbackStatus.PRIVACY
        elif not raw_uid:
            status = CallbackStatus.MISSING_UID
        elif raw_uid == partner.uid_macro:
            status = CallbackStatus.MACRO_NOT_REPLACED
        elif dmp_uid is None and (cookie_test is None or not partner.initiates_sync):
            status = CallbackStatus.NO_COOKIE
        elif dmp_uid is None and cookie_test:
            status = CallbackStatus.COOKIE_REFUSED
        else:  # the first hop opens the ID too: a bad one gets no cookie
            uid = self._readers[partner.id].open(raw_uid, self._clock())
            if uid is None:
                status = CallbackStatus.BAD_ID
            elif dmp_uid is None:
                status = CallbackStatus.VERIFY_COOKIE
        if status is CallbackStatus.COOKIE_REFUSED:
            self.funnel.partner(partner.id, "cookie_refused")
        elif status is not None and status is not CallbackStatus.VERIFY_COOKIE:
            self.funnel.partner(partner.id, "rejected")
            self.funnel.other(f"rejected_{status.value}")
        return partner, uid, status

    def verify_cookie(self, partner_id: str) -> str:
        """A new DMP ID for the first hop of a partner-initiated sync (``VERIFY_COOKIE``), once
        the handler has built its redirect: counted ``initiated``."""
        self.funnel.partner(partner_id, "initiated")
        return self._new_uid()

    async def callback(
        self,
        partner_id: str,
        dmp_uid: str | None,
        raw_uid: str | None,
        client_id: str | None = None,
        *,
        consent: RequestConsent,
        cookie_test: bool = False,
    ) -> CallbackStatus:
        """A partner's callback: store its ID against the DMP ID, both ways.

        Without a DMP cookie, a partner that ``initiates_sync`` starts a sync: the first hop
        answers ``VERIFY_COOKIE`` (nothing stored), the second (``cookie_test``: the marker
        the redirect adds) stores the match under the cookie the first set (``initiated_stored``,
        not ``callbacks``: no pixel was handed out for it) or, when the cookie did not come
        back, ``COOKIE_REFUSED``. A store call that fails (or passes its deadline) is counted
        as ``callback_failed`` before its error goes on to the route, which answers the pixel
        all the same (as ``inband`` counts ``inband_failed``)."""
        partner, uid, status = self._check(
            partner_id, dmp_uid, raw_uid, consent, cookie_test=cookie_test
        )
        if status is not None:
            return status
        assert partner is not None and uid is not None and dmp_uid is not None
        try:
            await self._store_match(partner, uid, dmp_uid, consent)
        except Exception:  # whatever failed, the match is not known to be stored
            self.funnel.partner(partner.id, "callback_failed")
            raise
        if cookie_test and partner.initiates_sync:
            self.funnel.partner(partner.id, "initiated_stored")
            return CallbackStatus.STORED
        self._count_callback(partner, client_id)
        return CallbackStatus.STORED

    def open_id(self, partner: Partner, raw_uid: str) -> str | None:
        """The partner's plain ID in ``raw_uid``, or None (malformed, forged or stale)."""
        return self._readers[partner.id].open(raw_uid, self._clock())

    async def callback_common(
        self,
        partner: Partner,
        dmp_uid: str,
        uid: str,
        client_id: str | None,
        silent: tuple[Decision, Decision],
    ) -> None:
        """``callback``'s common case as ``web/dmp/direct_callback.py`` brings it, with the
        same counts, store call and hooks: a DMP cookie, the partner's ID already opened
        (``open_id``), no privacy signal, and ``silent``: the policy's answers without one
        for keeping the DMP cookie and syncing this partner, both allowed and neither
        ``CONSENTED`` (so no consent marks), counted as ``judge`` and ``_check`` count them."""
        count = self.policy.count
        count((Operation.STORE_ID, silent[0].reason))
        count((Operation.SYNC, silent[1].reason))
        try:
            await self._store_match(partner, uid, dmp_uid, None)
        except Exception:  # as ``callback``
            self.funnel.partner(partner.id, "callback_failed")
            raise
        self._count_callback(partner, client_id)

    def _count_callback(self, partner: Partner, client_id: str | None) -> None:
        self.funnel.partner(partner.id, "callbacks")
        client = self.client(client_id)
        if client is not None:
            self.funnel.client(client.id, "callbacks")

    async def inband(
        self,
        partner_id: str,
        dmp_uid: str | None,
        raw_uid: str | None,
        kv: str,
        *,
        consent: RequestConsent,
    ) -> CallbackStatus:
        """A pixel-to-pixel redirect: the match and the key-values it carries; counted as
        ``inband`` and ``inband_values``, or ``inband_refused``. A store call that fails (or
        passes its deadline) is counted as ``inband_failed`` and ``inband_failed_values``
        before its error goes on to the route, which answers the pixel all the same: the
        partner cannot tell, so the funnel says what was not stored."""
        partner, uid, status = self._check(partner_id, dmp_uid, raw_uid, consent)
        if status is not None:
            if partner is not None:
                self.funnel.partner(partner.id, "inband_refused")
            return status
        assert partner is not None and uid is not None and dmp_uid is not None
        try:
            pairs = parse_kv(kv, max_pairs=self.settings.inband_max_pairs)
        except QueryError:
            self.funnel.partner(partner.id, "rejected")
            self.funnel.partner(partner.id, "inband_refused")
            self.funnel.other("rejected_bad_data")
            return CallbackStatus.BAD_DATA
        try:
            await self._store_match(partner, uid, dmp_uid, consent)
            await self.inband_data.record(partner.id, dmp_uid, pairs)
        except Exception:  # whatever failed, the values are not known to be stored
            self.funnel.partner(partner.id, "inband_failed")
            self.funnel.partner(partner.id, "inband_failed_values", len(pairs))
            raise
        self.funnel.partner(partner.id, "inband")
        self.funnel.partner(partner.id, "inband_values", len(pairs))
        return CallbackStatus.STORED

    def inband_too_large(self, partner_id: str) -> None:
        """An in-band redirect over ``inband_max_bytes``, refused unread: its data is lost."""
        self.funnel.other("rejected_inband_too_large")
        if partner_id in self.partners:
            self.funnel.partner(partner_id, "rejected")
            self.funnel.partner(partner_id, "inband_refused")

    async def _store_match(
        self, partner: Partner, uid: str, dmp_uid: str, consent: RequestConsent | None
    ) -> None:
        """The match, its marks, and what it sets off (``consent`` None: no signal)."""
        now = self._clock()
        marks = None
        if consent is not None and consent.store_id.reason is Reason.CONSENTED:  # GDPR: both
            answers = {**self._host_answers(consent), partner.id: True}
            marks = self.consent_marks.field_write(dmp_uid, answers, consent.signals, now)
        waiting = self.waiting
        if waiting is None:
            await self.matches.record(partner.id, dmp_uid, uid, now, also=marks)
        else:
            (found,) = await self.matches.record(
                partner.id, dmp_uid, uid, now, also=marks,
                read_after=(waiting.waiting_key(partner.id, uid),),
            )  # fmt: skip
            if found:
                await self._resolve(waiting, partner.id, uid, dmp_uid, found)
        if self.on_match:
            await self._matched(partner.id, uid, dmp_uid)

    async def _resolve(
        self,
        waiting: WaitingRecords,
        partner_id: str,
        partner_uid: str,
        dmp_uid: str,
        found: Mapping[str, bytes],
    ) -> None:
        try:
            await waiting.resolve_found(partner_id, partner_uid, dmp_uid, found)
        except StoreUnavailable:  # the store's guard logs an outage once
            return  # the match is stored; what waits for it is retried next time
        except Exception:  # the match is stored; what waits for it is retried next time
            log.exception("applying the records that waited failed for partner %r", partner_id)

    async def _matched(self, partner_id: str, partner_uid: str, dmp_uid: str) -> None:
        for hook in self.on_match:
            try:
                await hook(partner_id, partner_uid, dmp_uid)
            except StoreUnavailable:  # the store's guard logs an outage once
                continue  # the match is stored; what waits for it is retried next time
            except Exception:  # the match is stored; what waits for it is retried next time
                log.exception("an on_match hook failed for partner %r", partner_id)

    async def impression(
        self, dmp_uid: str, event: ImpressionEvent, consent: RequestConsent | None = None
    ) -> None:
        """An ad's event on the profile; under GDPR consent the DMP cookie's mark too."""
        now = self._clock()
        writes = [self.events.record(dmp_uid, event, now)]
        if consent is not None and consent.store_id.reason is Reason.CONSENTED:
            answers = self._host_answers(consent)
            writes.append(self.consent_marks.record(dmp_uid, answers, consent.signals, now))
        await asyncio.gather(*writes)
        self.funnel.other(f"events_{event.event.value}")

    async def audiences(self, dmp_uid: str | None, consent: RequestConsent) -> AudienceAnswer:
        """The browser's audience key-values, if the policy lets the DMP read its cookie and
        use its profile to choose ads (``PERSONALISE``, the DMP's own vendor ID)."""
        if not consent.store_id.allowed:
            return AudienceAnswer({}, consent.store_id.reason)
        if dmp_uid is None:
            return AudienceAnswer({})
        vendor_id = self.policy.settings.host_vendor_id
        decision = self.policy.decide(Operation.PERSONALISE, consent.signals, vendor_id)
        if not decision.allowed:
            return AudienceAnswer({}, decision.reason)
        return AudienceAnswer(audience_kv(await self.profiles.get(dmp_uid, traits=False)))

    async def profile(self, dmp_uid: str) -> Profile | None:
        found = await self.profiles.get(dmp_uid)
        return None if found.empty else found

    async def funnel_report(self, store: Store | None = None) -> FunnelReport:
        """Every process's funnel counts, this worker's flushed first; read through ``store``
        (the admin API's, with the admin deadline) or this service's own."""
        if store is None:
            counts = await self.funnel_log.total()
        else:
            with contextlib.suppress(StorageError):  # under the request deadline: the read
                await self.funnel_log.flush()  # goes on, without at most a second of counts
            counts = await read_total(store)
        return report(counts, list(self.partners), list(self.clients))
