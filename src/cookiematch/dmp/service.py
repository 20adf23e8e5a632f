"""The DMP's use cases: one call per browser-facing endpoint, each returning a value.

The HTTP layer parses the request (protocol), calls one method, and renders what it gets;
every method also counts its step of the funnel.

Privacy: ``consent`` reads a request's signals once and asks the policy whether the DMP cookie
may be used (``STORE_ID``); the handler reads the cookie only if so, and passes the answer to
the use case, which asks the policy for each partner (``SYNC``) and for the browser's audiences
(``PERSONALISE``). docs/privacy.md, "Enforcement: the DMP".
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.dmp.audiences import audience_kv
from cookiematch.dmp.chooser import SyncDecision, SyncStatus, by_priority, choose
from cookiematch.dmp.consent import HOST, ConsentMarks, RequestConsent
from cookiematch.dmp.events import EventLog, ImpressionEvent
from cookiematch.dmp.funnel import Funnel, FunnelLog, FunnelReport, report
from cookiematch.dmp.inband import InbandData, parse_kv
from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.model import Client, DmpSettings, Partner
from cookiematch.dmp.partner_ids import PartnerIdReader
from cookiematch.dmp.profiles import Profile, Profiles
from cookiematch.dmp.segments.membership import Memberships
from cookiematch.dmp.traits.reader import ProfileReader
from cookiematch.dmp.traits.writes import TraitStore
from cookiematch.errors import QueryError
from cookiematch.privacy.policy import Decision, Operation, PrivacyPolicy, Reason
from cookiematch.privacy.signals import decode_signals
from cookiematch.protocol.privacy import PrivacySignals
from cookiematch.protocol.templates import MacroValues
from cookiematch.storage.base import Store

OnMatch = Callable[[str, str, str], Awaitable[object]]
"""Called with (partner id, partner uid, DMP uid) after a match is stored."""

log = logging.getLogger(__name__)


class CallbackStatus(enum.Enum):
    STORED = "stored"
    UNKNOWN_PARTNER = "unknown_partner"
    NO_COOKIE = "no_cookie"
    MISSING_UID = "missing_uid"
    MACRO_NOT_REPLACED = "macro_not_replaced"  # the partner sent our uid macro back as is
    BAD_ID = "bad_id"  # malformed, forged or stale partner ID
    BAD_DATA = "bad_data"  # in-band key-values that do not parse
    PRIVACY = "privacy"  # the signals refuse the DMP cookie or this partner


_SYNC_STATUSES = (SyncStatus.SYNC, SyncStatus.FRESH)  # the partner gets or holds the ID


@dataclass(frozen=True, slots=True)
class SyncResult:
    dmp_uid: str | None  # None: the DMP cookie is refused (``store_id``), the browser unknown
    new_browser: bool
    pixels: tuple[str, ...]
    decision: SyncDecision
    store_id: Decision


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
        profile_reader: ProfileReader,
        memberships: Memberships,
        policy: PrivacyPolicy,
        on_match: Sequence[OnMatch] = (),
        clock: Clock,
        new_uid: Callable[[], str],
        worker: str,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.partners: Mapping[str, Partner] = {p.id: p for p in partners}
        self.clients: Mapping[str, Client] = {c.id: c for c in clients}
        self._ordered = by_priority(partners)
        self._readers = {p.id: PartnerIdReader(p) for p in partners}
        self._clock = clock
        self._new_uid = new_uid
        self.matches = matches
        self.events = EventLog(
            store,
            max_per_profile=settings.max_events_per_profile,
            ttl_seconds=settings.event_ttl_days * SECONDS_PER_DAY,
        )
        self.inband_data = InbandData(store, settings.match_ttl_days * SECONDS_PER_DAY)
        self.consent_marks = ConsentMarks(store, settings.match_ttl_days * SECONDS_PER_DAY)
        self.traits = traits
        self.profile_reader = profile_reader
        self.profiles = Profiles(
            matches, self.events, self.inband_data, memberships, profile_reader, self.consent_marks
        )
        self.on_match = tuple(on_match)  # e.g. applying ingested records that waited
        self.funnel = Funnel()
        self.funnel_log = FunnelLog(store, worker, self.funnel)

    def client(self, client_id: str | None) -> Client | None:
        return self.clients.get(client_id) if client_id else None

    def new_uid(self) -> str:
        return self._new_uid()

    def tag_served(self, client: Client) -> None:
        self.funnel.client(client.id, "tag_js")

    def consent(self, params: PrivacySignals, sec_gpc: str | None = None) -> RequestConsent:
        """A request's signals decoded once, and whether the DMP cookie may be set or read."""
        signals = decode_signals(params, sec_gpc)
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
        decision = choose(
            self._ordered,
            client,
            synced_at,
            now=now,
            limit=self.settings.max_syncs_per_page,
            allow=self._sync_allowed(consent),
        )
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
            if store_id.reason is Reason.CONSENTED:
                consented = [
                    s.partner
                    for s in decision.statuses
                    if s.status in _SYNC_STATUSES and s.reason is Reason.CONSENTED
                ]
                await self.consent_marks.record(dmp_uid, [HOST, *consented], consent.signals, now)
        self.funnel.client(client.id, "tags_loaded")
        if pixels:
            self.funnel.client(client.id, "pixels", len(pixels))
        for partner in decision.chosen:
            self.funnel.partner(partner.id, "pixels")
        return SyncResult(dmp_uid, new_browser, pixels, decision, store_id)

    def _sync_allowed(self, consent: RequestConsent) -> Callable[[Partner], Decision]:
        """The chooser's question: the policy's ``SYNC`` answer for a partner, or the DMP
        cookie's refusal for all of them."""
        store_id = consent.store_id
        if not store_id.allowed:
            return lambda _partner: store_id
        policy, signals = self.policy, consent.signals
        return lambda partner: policy.decide(Operation.SYNC, signals, partner.gvl_vendor_id)

    def _check(
        self, partner_id: str, dmp_uid: str | None, raw_uid: str | None, consent: RequestConsent
    ) -> tuple[Partner | None, str | None, CallbackStatus | None]:
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
        elif dmp_uid is None:
            status = CallbackStatus.NO_COOKIE
        else:
            uid = self._readers[partner.id].open(raw_uid, self._clock())
            if uid is None:
                status = CallbackStatus.BAD_ID
        if status is not None:
            self.funnel.partner(partner.id, "rejected")
            self.funnel.other(f"rejected_{status.value}")
        return partner, uid, status

    async def callback(
        self,
        partner_id: str,
        dmp_uid: str | None,
        raw_uid: str | None,
        client_id: str | None = None,
        *,
        consent: RequestConsent,
    ) -> CallbackStatus:
        """A partner's callback: store its ID against the DMP ID, both ways."""
        partner, uid, status = self._check(partner_id, dmp_uid, raw_uid, consent)
        if status is not None:
            return status
        assert partner is not None and uid is not None and dmp_uid is not None
        await self._store_match(partner, uid, dmp_uid, consent)
        self.funnel.partner(partner.id, "callbacks")
        client = self.client(client_id)
        if client is not None:
            self.funnel.client(client.id, "callbacks")
        return CallbackStatus.STORED

    async def inband(
        self,
        partner_id: str,
        dmp_uid: str | None,
        raw_uid: str | None,
        kv: str,
        *,
        consent: RequestConsent,
    ) -> CallbackStatus:
        """A pixel-to-pixel redirect: the match and the key-values it carries."""
        partner, uid, status = self._check(partner_id, dmp_uid, raw_uid, consent)
        if status is not None:
            return status
        assert partner is not None and uid is not None and dmp_uid is not None
        try:
            pairs = parse_kv(kv, max_pairs=self.settings.inband_max_pairs)
        except QueryError:
            self.funnel.partner(partner.id, "rejected")
            self.funnel.other("rejected_bad_data")
            return CallbackStatus.BAD_DATA
        await self._store_match(partner, uid, dmp_uid, consent)
        await self.inband_data.record(partner.id, dmp_uid, pairs)
        self.funnel.partner(partner.id, "inband")
        return CallbackStatus.STORED

    async def _store_match(
        self, partner: Partner, uid: str, dmp_uid: str, consent: RequestConsent
    ) -> None:
        now = self._clock()
        parties = [HOST, partner.id] if consent.store_id.reason is Reason.CONSENTED else []
        await asyncio.gather(  # under GDPR both were allowed: the consent is marked too
            self.matches.record(partner.id, dmp_uid, uid, now),
            self.consent_marks.record(dmp_uid, parties, consent.signals, now),
        )
        await self._matched(partner.id, uid, dmp_uid)

    async def _matched(self, partner_id: str, partner_uid: str, dmp_uid: str) -> None:
        for hook in self.on_match:
            try:
                await hook(partner_id, partner_uid, dmp_uid)
            except Exception:  # the match is stored; what waits for it is retried next time
                log.exception("an on_match hook failed for partner %r", partner_id)

    async def impression(self, dmp_uid: str, event: ImpressionEvent) -> None:
        await self.events.record(dmp_uid, event, self._clock())
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
        return AudienceAnswer(audience_kv(await self.profiles.get(dmp_uid)))

    async def profile(self, dmp_uid: str) -> Profile | None:
        found = await self.profiles.get(dmp_uid)
        return None if found.empty else found

    async def funnel_report(self) -> FunnelReport:
        counts = await self.funnel_log.total()
        return report(counts, list(self.partners), list(self.clients))
