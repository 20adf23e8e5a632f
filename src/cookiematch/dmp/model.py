"""The DMP's configured world as plain values: partners, clients, their other tags, settings."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cookiematch.clock import SECONDS_PER_DAY
from cookiematch.protocol.privacy import NO_SIGNALS, PrivacySignals
from cookiematch.protocol.query import encode_component
from cookiematch.protocol.templates import SyncTemplate

UID_PARAM = "uid"
CLIENT_PARAM = "c"
COOKIE_TEST_PARAM = "dmp_tc"
"""Marks the second hop of a partner-initiated sync: the DMP's redirect to its own callback
after setting its cookie, to see whether the cookie came back (as ``google_tc`` does)."""
CMP_WAIT_MS = 500
"""How long the container tag waits by default for the page's CMP (``__tcfapi``, ``__gpp``)
before it calls ``/sync`` with what it has."""


class IdFormat(enum.Enum):
    """How a partner's ID comes back on the callback (see ``dmp/partner_ids.py``)."""

    PLAIN = "plain"
    SIGNED = "signed"  # "<uid>.<unix seconds>.<HMAC-SHA256, base64url>"
    ENCRYPTED = "encrypted"  # base64url(nonce || AES-256-GCM(uid, "<unix seconds>"))


@dataclass(frozen=True, slots=True)
class Partner:
    """An integration partner (analytics, email, DSP...) as data."""

    id: str
    sync: SyncTemplate
    uid_macro: str = "$UID"
    ttl_days: int = 7
    priority: int = 0
    enabled: bool = True
    id_format: IdFormat = IdFormat.PLAIN
    id_key: bytes | None = None
    id_max_age_seconds: int = SECONDS_PER_DAY
    gvl_vendor_id: int | None = None  # its IAB GVL vendor ID, for the privacy policy
    initiates_sync: bool = False  # its callback may cookie a browser the DMP does not know

    @property
    def ttl_seconds(self) -> int:
        return self.ttl_days * SECONDS_PER_DAY


class TagKind(enum.Enum):
    IMAGE = "image"
    SCRIPT = "script"


@dataclass(frozen=True, slots=True)
class OtherTag:
    """A client's other tag that the container fires, at most ``cap`` times per period, when
    the privacy policy lets its vendor have the browser (``gvl_vendor_id``; docs/privacy.md)."""

    id: str
    url: str
    kind: TagKind = TagKind.IMAGE
    cap: int | None = None  # None: every page
    cap_period_hours: int = 24
    gvl_vendor_id: int | None = None  # the IAB GVL vendor the tag hands the browser to


@dataclass(frozen=True, slots=True)
class Client:
    """A DMP customer's site: who may call ``/sync`` from a page, which partners it syncs."""

    id: str
    allowed_origins: frozenset[str] = frozenset()
    partners: frozenset[str] | None = None  # None: every partner
    tags: tuple[OtherTag, ...] = ()
    cmp_wait_ms: int = CMP_WAIT_MS  # the container tag's wait for the page's CMP

    def uses(self, partner_id: str) -> bool:
        return self.partners is None or partner_id in self.partners


@dataclass(frozen=True, slots=True)
class DmpSettings:
    """Policies of the DMP role that are not per partner or client."""

    public_url: str  # scheme://host[:port] of this DMP as browsers reach it
    max_syncs_per_page: int = 5
    match_ttl_days: int = 390
    max_events_per_profile: int = 200
    event_ttl_days: int = 90
    inband_max_bytes: int = 1024
    inband_max_pairs: int = 20
    jsonp_origins: frozenset[str] = frozenset()  # pages that may read /audiences as JSONP

    def callback_url(
        self, partner: Partner, client_id: str | None, privacy: PrivacySignals = NO_SIGNALS
    ) -> str:
        """The callback the partner sends the browser to; ends in ``uid=<uid_macro>``. The
        sync's privacy parameters ride along (as Prebid Server's ``/setuid`` URL carries
        them), so the callback is judged under the signals the sync was."""
        client = f"{CLIENT_PARAM}={client_id}&" if client_id else ""
        carried = "".join(f"{p.name}={encode_component(p.value or '')}&" for p in privacy.params())
        return (
            f"{self.public_url}/callback/{partner.id}?{client}{carried}"
            f"{UID_PARAM}={partner.uid_macro}"
        )
