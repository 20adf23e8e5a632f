"""What a request's privacy signals allow the DMP, and the GDPR consent kept on a profile.

``RequestConsent`` is read once per browser request (``DmpService.consent``): the privacy
parameters as sent (partners' sync URLs and our callback URL carry them on), the signals
decoded once, and the policy's answer for the DMP cookie (``STORE_ID``). Without that answer
the DMP neither sets nor reads its cookie: the browser is unknown.

When GDPR applies and the policy allows a sync or a callback (reason ``consented``), the
profile keeps a ``ConsentMark`` per party: when the DMP decided and the TC string's
LastUpdated, so that ingestion and exports can later leave out profiles without a
destination's consent (docs/dmp.md, "Consent on the profile"). Two numbers per party, in one
field map per browser:

    dmp:{<dmp uid>}:g   field map   "*" (the DMP's cookie) or partner id -> [at, tc_last_updated]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from cookiematch.dmp import keys
from cookiematch.privacy.policy import Decision
from cookiematch.privacy.signals import ConsentSignals
from cookiematch.protocol.privacy import PrivacySignals
from cookiematch.protocol.tcf import TCString
from cookiematch.storage.base import Store

__all__ = ["HOST", "ConsentMark", "ConsentMarks", "ProfileConsent", "RequestConsent", "tc_of"]

HOST = "*"  # the field of the DMP's own cookie (no partner id has a "*")


@dataclass(frozen=True, slots=True)
class RequestConsent:
    """One request's privacy: ``params`` as sent, ``signals`` decoded, ``store_id`` the
    policy's answer for the DMP cookie."""

    params: PrivacySignals
    signals: ConsentSignals
    store_id: Decision


class ConsentMark(msgspec.Struct, frozen=True):
    """GDPR consent seen for a party: ``at`` when the DMP decided (unix seconds), and the TC
    string's LastUpdated (unix seconds, as the CMP wrote it: usually rounded to the day)."""

    at: float
    tc_last_updated: float


class ProfileConsent(msgspec.Struct, frozen=True):
    """What ``GET /admin/v1/profiles/<uid>`` shows as ``consent``: the DMP cookie's mark and
    each partner's."""

    dmp_cookie: ConsentMark | None = None
    partners: dict[str, ConsentMark] = {}

    @property
    def empty(self) -> bool:
        return self.dmp_cookie is None and not self.partners


class _Stored(msgspec.Struct, array_like=True, frozen=True):
    at: float
    tc_last_updated: float


_decoder = msgspec.json.Decoder(_Stored)


def tc_of(signals: ConsentSignals) -> TCString | None:
    """The TC string a ``consented`` decision rested on (the one in force)."""
    tc = signals.tc_string
    return tc if isinstance(tc, TCString) else None


class ConsentMarks:
    """The consent marks of each browser, kept as long as its matches."""

    def __init__(self, store: Store, ttl_seconds: float) -> None:
        self._store = store
        self._ttl = ttl_seconds

    async def record(
        self, dmp_uid: str, parties: Iterable[str], signals: ConsentSignals, now: float
    ) -> None:
        """Mark ``parties`` (``HOST`` or partner ids) as consented now, under the request's TC
        string; nothing without one."""
        tc = tc_of(signals)
        fields = list(parties)
        if tc is None or not fields:
            return
        value = msgspec.json.encode(_Stored(now, tc.last_updated / 10))
        await self._store.hset(
            keys.consent_key(dmp_uid), dict.fromkeys(fields, value), ttl=self._ttl
        )

    async def get(self, dmp_uid: str) -> ProfileConsent:
        host: ConsentMark | None = None
        partners: dict[str, ConsentMark] = {}
        for party, raw in sorted((await self._store.hgetall(keys.consent_key(dmp_uid))).items()):
            try:
                stored = _decoder.decode(raw)
            except msgspec.DecodeError:
                continue
            mark = ConsentMark(stored.at, stored.tc_last_updated)
            if party == HOST:
                host = mark
            else:
                partners[party] = mark
        return ProfileConsent(host, partners)
