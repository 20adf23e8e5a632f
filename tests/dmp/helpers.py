"""DMP test data: partners and clients as data, a fake clock, a service builder."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.dmp.consent import RequestConsent
from cookiematch.dmp.matches import MatchTable
from cookiematch.dmp.model import Client, DmpSettings, IdFormat, Partner
from cookiematch.dmp.segments.membership import Memberships
from cookiematch.dmp.service import DmpService, OnMatch, WaitingRecords
from cookiematch.dmp.traits.reader import ProfileReader
from cookiematch.dmp.traits.schema import TraitCatalog
from cookiematch.dmp.traits.writes import TraitStore
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.protocol.privacy import PrivacySignals
from cookiematch.protocol.templates import SyncTemplate
from cookiematch.storage import Store

KEY = bytes(range(32))
NOW = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def partner(pid: str, url: str | None = None, **kwargs: object) -> Partner:
    url = url or f"https://{pid}.example/sync?redir=${{CALLBACK_URL}}"
    return Partner(id=pid, sync=SyncTemplate.compile(url), **kwargs)  # type: ignore[arg-type]


ANALYTICS_VENDOR, EMAIL_VENDOR, ORDERS_VENDOR = 7, 8, 9  # GVL vendor IDs; the dsp has none
PARTNERS = [
    partner("analytics", priority=30, gvl_vendor_id=ANALYTICS_VENDOR),
    partner("email", priority=20, uid_macro="[EMAIL_ID]", id_format=IdFormat.SIGNED, id_key=KEY,
            gvl_vendor_id=EMAIL_VENDOR),
    partner("orders", "https://oms.example/px/${DMP_UID}", priority=10, ttl_days=30,
            gvl_vendor_id=ORDERS_VENDOR),
    partner("dsp", priority=5, id_format=IdFormat.ENCRYPTED, id_key=KEY),
    partner("off", enabled=False),
]  # fmt: skip
CLIENTS = [
    Client("shop", allowed_origins=frozenset({"http://shop.localhost:8000"})),
    Client("blog", partners=frozenset({"orders"})),
]
SETTINGS = DmpSettings(public_url="http://dmp.localhost:8720", max_syncs_per_page=3,
                       max_events_per_profile=3)  # fmt: skip


def make_service(
    store: Store,
    clock: FakeClock,
    worker: str = "w1",
    *,
    traits: TraitStore | None = None,
    on_match: Sequence[OnMatch] = (),
    waiting: WaitingRecords | None = None,
    policy: PrivacyPolicy | None = None,
    clients: Sequence[Client] = CLIENTS,
    partners: Sequence[Partner] = PARTNERS,
    export_vendors: Sequence[int] = (),
) -> DmpService:
    """A DMP service over ``store``, its collaborators built explicitly (as the composition
    root builds them from the configuration)."""
    counter = itertools.count(1)
    return DmpService(
        store, SETTINGS, partners, clients,
        matches=MatchTable(store, SETTINGS.match_ttl_days * SECONDS_PER_DAY),
        traits=traits or TraitStore(store, TraitCatalog(), clock=clock),
        profile_reader=ProfileReader(store, clock=clock),
        memberships=Memberships(store),
        policy=policy or PrivacyPolicy(),
        export_vendors=export_vendors,
        on_match=on_match,
        waiting=waiting,
        clock=clock,
        new_uid=lambda: f"uid{next(counter):019d}"[:22],
        worker=worker,
    )  # fmt: skip


def consent(service: DmpService, sec_gpc: str | None = None, **params: str) -> RequestConsent:
    """A request's privacy as the handlers read it: ``consent(service)`` for no signal."""
    return service.consent(PrivacySignals(**params), sec_gpc)
