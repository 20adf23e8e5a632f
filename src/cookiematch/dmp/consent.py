"""What a request's privacy signals allow the DMP, and the GDPR consent kept on a profile.

``RequestConsent`` is read once per browser request (``DmpService.consent``): the privacy
parameters as sent (partners' sync URLs and our callback URL carry them on), the signals
decoded once, and the policy's answer for the DMP cookie (``STORE_ID``). Without that answer
the DMP neither sets nor reads its cookie: the browser is unknown.

When GDPR applies, the profile keeps the policy's latest answer per party as a mark: when the
DMP decided, the TC string's LastUpdated, and whether the answer was a refusal. Parties are
the DMP's cookie (``HOST``), each partner (its id) and each export destination's GVL vendor
(``vendor_party``). Ingestion and exports read the marks without a request in hand
(``StoredConsent``): docs/privacy.md, "Consent kept on the profile". One field map per browser:

    dmp:{<dmp uid>}:g   field map   "*" | partner id | "v:<vendor id>"
                                    -> [at, tc_last_updated, refused]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

from cookiematch.clock import SECONDS_PER_DAY, Clock
from cookiematch.dmp import keys
from cookiematch.dmp.change_marks import MARKING, ChangeMarks
from cookiematch.privacy.policy import Decision
from cookiematch.privacy.signals import ConsentSignals
from cookiematch.protocol.privacy import PrivacySignals
from cookiematch.protocol.tcf import TCString
from cookiematch.storage.base import FieldWrite, Store

__all__ = [
    "CONSENT_MAX_AGE",
    "HOST",
    "ConsentMark",
    "ConsentMarks",
    "ProfileConsent",
    "RequestConsent",
    "StoredConsent",
    "allows",
    "decode_mark",
    "tc_of",
    "vendor_party",
]

HOST = "*"  # the field of the DMP's own cookie (no partner id has a "*")
VENDOR_PREFIX = "v:"  # a vendor's field; no partner id has a ":"
CONSENT_MAX_AGE = 395.0 * SECONDS_PER_DAY
"""A consent mark counts for 13 months after its TC string's LastUpdated: TCF CMPs must ask
again by then, so an older string is no longer the visitor's answer."""
READ_CHUNK = 5000  # profiles per bulk read of their marks


def vendor_party(vendor_id: int) -> str:
    """The mark field of a GVL vendor (an export destination's)."""
    return f"{VENDOR_PREFIX}{vendor_id}"


@dataclass(frozen=True, slots=True)
class RequestConsent:
    """One request's privacy: ``params`` as sent, ``signals`` decoded, ``store_id`` the
    policy's answer for the DMP cookie."""

    params: PrivacySignals
    signals: ConsentSignals
    store_id: Decision


class ConsentMark(msgspec.Struct, frozen=True, omit_defaults=True):
    """The policy's latest GDPR answer for a party: ``at`` when the DMP decided (unix seconds),
    the TC string's LastUpdated (unix seconds, as the CMP wrote it: usually rounded to the
    day; None for a refusal without a readable TC string), and ``refused`` when it said no."""

    at: float
    tc_last_updated: float | None
    refused: bool = False


class ProfileConsent(msgspec.Struct, frozen=True):
    """What ``GET /admin/v1/profiles/<uid>`` shows as ``consent``: the DMP cookie's mark, each
    partner's and each export vendor's (by GVL vendor ID)."""

    dmp_cookie: ConsentMark | None = None
    partners: dict[str, ConsentMark] = {}
    vendors: dict[str, ConsentMark] = {}

    @property
    def empty(self) -> bool:
        return self.dmp_cookie is None and not self.partners and not self.vendors


class _Stored(msgspec.Struct, array_like=True, frozen=True):
    at: float
    tc_last_updated: float | None
    refused: bool = False


_decoder = msgspec.json.Decoder(_Stored)


def _mark(raw: bytes | None) -> _Stored | None:
    if raw is None:
        return None
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError:
        return None


def decode_mark(raw: bytes) -> ConsentMark | None:
    """A stored mark, or None when it does not decode."""
    stored = _mark(raw)
    if stored is None:
        return None
    return ConsentMark(stored.at, stored.tc_last_updated, stored.refused)


def tc_of(signals: ConsentSignals) -> TCString | None:
    """The TC string a ``consented`` decision rested on (the one in force)."""
    tc = signals.tc_string
    return tc if isinstance(tc, TCString) else None


def allows(fields: Mapping[str, bytes], party: str | None, now: float) -> bool:
    """May ``party`` (a partner id, ``vendor_party(n)``, or None for a party without a vendor
    ID) receive or send this profile's data, by the profile's marks (``fields``)?

    A profile without any mark was never seen under GDPR: nothing refuses. Otherwise, as the
    policy would under GDPR, both the DMP cookie's mark and the party's must be consents, the
    latest answers, and their TC strings at most ``CONSENT_MAX_AGE`` old; a party without a
    vendor ID cannot have one."""
    if not fields:
        return True
    if party is None:
        return False
    return _valid(_mark(fields.get(HOST)), now) and _valid(_mark(fields.get(party)), now)


def _valid(mark: _Stored | None, now: float) -> bool:
    return (
        mark is not None
        and not mark.refused
        and mark.tc_last_updated is not None
        and now - mark.tc_last_updated <= CONSENT_MAX_AGE
    )


class ConsentMarks:
    """The consent marks of each browser, kept as long as its matches."""

    def __init__(self, store: Store, ttl_seconds: float, marks: ChangeMarks = MARKING) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._marks = marks

    async def record(
        self, dmp_uid: str, answers: Mapping[str, bool], signals: ConsentSignals, now: float
    ) -> None:
        """Write each party's mark (``HOST``, partner ids, ``vendor_party``): True for a
        consent, False for a refusal, under the request's TC string. A consent needs a TC
        string (without one, GDPR allows nothing): it is left out without one."""
        write = self.field_write(dmp_uid, answers, signals, now)
        if write is not None:  # the profile changed (change_marks.py)
            await self._store.hset_many([write, *self._marks.write(dmp_uid, now)])

    def field_write(
        self, dmp_uid: str, answers: Mapping[str, bool], signals: ConsentSignals, now: float
    ) -> FieldWrite | None:
        """What ``record`` writes, for a caller that writes it with its own (one store call),
        or None when there is nothing to write."""
        if not answers:
            return None
        tc = tc_of(signals)
        last_updated = None if tc is None else tc.last_updated / 10
        consented = msgspec.json.encode(_Stored(now, last_updated))
        refused = msgspec.json.encode(_Stored(now, last_updated, True))
        fields = {
            party: consented if allowed else refused
            for party, allowed in answers.items()
            if not allowed or last_updated is not None
        }
        return (keys.consent_key(dmp_uid), fields, self._ttl) if fields else None

    async def get(self, dmp_uid: str) -> ProfileConsent:
        host: ConsentMark | None = None
        partners: dict[str, ConsentMark] = {}
        vendors: dict[str, ConsentMark] = {}
        for party, raw in sorted((await self._store.hgetall(keys.consent_key(dmp_uid))).items()):
            stored = _mark(raw)
            if stored is None:
                continue
            mark = ConsentMark(stored.at, stored.tc_last_updated, stored.refused)
            if party == HOST:
                host = mark
            elif party.startswith(VENDOR_PREFIX):
                vendors[party.removeprefix(VENDOR_PREFIX)] = mark
            else:
                partners[party] = mark
        return ProfileConsent(host, partners, vendors)


class StoredConsent:
    """The marks of many profiles read at once, and judged for one party (``allows``): what
    ingestion and exports ask, with no request in hand."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def refused(self, dmp_uids: Sequence[str], party: str | None) -> set[str]:
        """The profiles among ``dmp_uids`` whose marks refuse ``party``."""
        found: set[str] = set()
        now = self._clock()
        for i in range(0, len(dmp_uids), READ_CHUNK):
            chunk = dmp_uids[i : i + READ_CHUNK]
            maps = await self._store.hgetall_many([keys.consent_key(u) for u in chunk])
            found.update(
                uid
                for uid, fields in zip(chunk, maps, strict=True)
                if fields and not allows(fields, party, now)
            )
        return found
