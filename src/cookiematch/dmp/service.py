"""The DMP's use cases: one call per browser-facing endpoint, each returning a value.

The HTTP layer parses the request (protocol), calls one method, and renders what it gets;
every method also counts its step of the funnel.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.dmp.audiences import audience_kv
from cookiematch.dmp.chooser import SyncDecision, by_priority, choose
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


@dataclass(frozen=True, slots=True)
class SyncResult:
    dmp_uid: str
    new_browser: bool
    pixels: tuple[str, ...]
    decision: SyncDecision


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
        on_match: Sequence[OnMatch] = (),
        clock: Clock,
        new_uid: Callable[[], str],
        worker: str,
    ) -> None:
        self.settings = settings
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
        self.traits = traits
        self.profile_reader = profile_reader
        self.profiles = Profiles(
            matches, self.events, self.inband_data, memberships, profile_reader
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

    async def sync(
        self, client: Client, dmp_uid: str | None, privacy: PrivacySignals
    ) -> SyncResult:
        """The pixels one page should fire (a new DMP ID when the browser has none)."""
        now = self._clock()
        new_browser = dmp_uid is None
        if dmp_uid is None:
            dmp_uid = self._new_uid()
            synced_at: dict[str, float] = {}
        else:
            synced_at = {p: m.at for p, m in (await self.matches.partners(dmp_uid)).items()}
        decision = choose(
            self._ordered,
            client,
            synced_at,
            now=now,
            limit=self.settings.max_syncs_per_page,
            privacy=privacy,
        )
        pixels = tuple(
            partner.sync.render(
                MacroValues(self.settings.callback_url(partner, client.id), dmp_uid, privacy)
            )
            for partner in decision.chosen
        )
        self.funnel.client(client.id, "tags_loaded")
        if pixels:
            self.funnel.client(client.id, "pixels", len(pixels))
        for partner in decision.chosen:
            self.funnel.partner(partner.id, "pixels")
        return SyncResult(dmp_uid, new_browser, pixels, decision)

    def _check(
        self, partner_id: str, dmp_uid: str | None, raw_uid: str | None
    ) -> tuple[Partner | None, str | None, CallbackStatus | None]:
        partner = self.partners.get(partner_id)
        if partner is None:
            self.funnel.other("unknown_partner")
            return None, None, CallbackStatus.UNKNOWN_PARTNER
        status: CallbackStatus | None = None
        uid: str | None = None
        if not raw_uid:
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
    ) -> CallbackStatus:
        """A partner's callback: store its ID against the DMP ID, both ways."""
        partner, uid, status = self._check(partner_id, dmp_uid, raw_uid)
        if status is not None:
            return status
        assert partner is not None and uid is not None and dmp_uid is not None
        await self.matches.record(partner.id, dmp_uid, uid, self._clock())
        await self._matched(partner.id, uid, dmp_uid)
        self.funnel.partner(partner.id, "callbacks")
        client = self.client(client_id)
        if client is not None:
            self.funnel.client(client.id, "callbacks")
        return CallbackStatus.STORED

    async def inband(
        self, partner_id: str, dmp_uid: str | None, raw_uid: str | None, kv: str
    ) -> CallbackStatus:
        """A pixel-to-pixel redirect: the match and the key-values it carries."""
        partner, uid, status = self._check(partner_id, dmp_uid, raw_uid)
        if status is not None:
            return status
        assert partner is not None and uid is not None and dmp_uid is not None
        try:
            pairs = parse_kv(kv, max_pairs=self.settings.inband_max_pairs)
        except QueryError:
            self.funnel.partner(partner.id, "rejected")
            self.funnel.other("rejected_bad_data")
            return CallbackStatus.BAD_DATA
        await self.matches.record(partner.id, dmp_uid, uid, self._clock())
        await self._matched(partner.id, uid, dmp_uid)
        await self.inband_data.record(partner.id, dmp_uid, pairs)
        self.funnel.partner(partner.id, "inband")
        return CallbackStatus.STORED

    async def _matched(self, partner_id: str, partner_uid: str, dmp_uid: str) -> None:
        for hook in self.on_match:
            try:
                await hook(partner_id, partner_uid, dmp_uid)
            except Exception:  # the match is stored; what waits for it is retried next time
                log.exception("an on_match hook failed for partner %r", partner_id)

    async def impression(self, dmp_uid: str, event: ImpressionEvent) -> None:
        await self.events.record(dmp_uid, event, self._clock())
        self.funnel.other(f"events_{event.event.value}")

    async def audiences(self, dmp_uid: str | None) -> dict[str, list[str]]:
        if dmp_uid is None:
            return {}
        return audience_kv(await self.profiles.get(dmp_uid))

    async def profile(self, dmp_uid: str) -> Profile | None:
        found = await self.profiles.get(dmp_uid)
        return None if found.empty else found

    async def funnel_report(self) -> FunnelReport:
        counts = await self.funnel_log.total()
        return report(counts, list(self.partners), list(self.clients))
