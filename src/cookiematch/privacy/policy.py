"""The privacy policy: may this operation happen, for this party, under these signals?

Every role asks one ``PrivacyPolicy`` (built by its composition root from ``[privacy]``):

    STORE_ID     set or read the role's own ID cookie (the host is the party)
    SYNC         share an ID with a party, or take one from it: a gid handed to a buyer, a
                 hosted-match or user-list write for a buyer, a DMP partner's sync
    PERSONALISE  use a matched ID to choose ads: a bid request carrying user IDs, a bid on a
                 match, segments, exports of audiences

The answer is a ``Decision``: allowed or not, and the ``Reason``, which the roles count.

GDPR (TCF v2.2). It applies when the request says ``gdpr=1``; with no ``gdpr`` parameter,
when the GPP string's section 2 is in force, else as ``gdpr_default`` says. Then the TC string
(``gdpr_consent``, or the GPP's section 2) must decode, and for each purpose the operation
needs, the purpose and the party's vendor must allow it: purposes 1 and 3-6 by consent only
(the policy of TCF v2.2), the others by consent or legitimate interest; a publisher
restriction can forbid a purpose to a vendor or require consent for it. A party with no GVL
vendor ID cannot be checked and so is refused; for STORE_ID with no ``host_vendor_id``
configured, only the purposes are checked (as Prebid Server does for its host cookie).

US (US Privacy, GPP sections 6-12, Global Privacy Control). An opt-out of sale or sharing
refuses SYNC and PERSONALISE, an opt-out of targeted advertising refuses PERSONALISE; STORE_ID
is not a sale and stays allowed. A US Privacy or GPP string that does not decode counts as
an opt-out. With a GPP string and no usable ``gpp_sid``, every US section in it is read.

COPPA. A child-directed request (``regs.coppa = 1``, or a publisher configured as such)
refuses every operation, whatever its consent: no cookie, no sync, no user IDs.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field

from cookiematch.privacy.signals import ConsentSignals, in_force_sections
from cookiematch.protocol.gpp import TCF_EU_V2, GppString
from cookiematch.protocol.gpp_us import OPTED_OUT, UsOptOuts
from cookiematch.protocol.tcf import RestrictionType, TCString
from cookiematch.protocol.undecodable import Undecodable
from cookiematch.tally import counter

__all__ = [
    "CONSENT_ONLY",
    "MEMO_SIZE",
    "Decision",
    "Operation",
    "PrivacyPolicy",
    "PrivacySettings",
    "Reason",
]

CONSENT_ONLY = frozenset({1, 3, 4, 5, 6})
"""Purposes TCF v2.2 allows on consent only (no legitimate interest)."""


class Operation(enum.StrEnum):
    __hash__ = str.__hash__  # Enum's own hash is a Python call; answers are keyed by these

    STORE_ID = "store_id"
    SYNC = "sync"
    PERSONALISE = "personalise"


class Reason(enum.StrEnum):
    __hash__ = str.__hash__

    NOT_REGULATED = "not_regulated"  # no GDPR, no US opt-out: allowed
    CONSENTED = "consented"  # GDPR applies and the TC string allows it
    NO_CONSENT_STRING = "no_consent_string"  # GDPR applies, no TC string
    UNDECODABLE = "undecodable"  # a consent string that does not decode: no consent
    PURPOSE = "purpose_not_allowed"
    VENDOR = "vendor_not_allowed"
    NO_VENDOR_ID = "party_without_vendor_id"
    PUBLISHER_RESTRICTION = "publisher_restriction"
    US_OPT_OUT = "us_opt_out"
    GPC = "gpc"
    COPPA = "coppa"  # a child-directed request: nothing personal, whatever the consent


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: Reason


_ALLOWED = {reason: Decision(True, reason) for reason in (Reason.NOT_REGULATED, Reason.CONSENTED)}
_REFUSED = {reason: Decision(False, reason) for reason in Reason if reason not in _ALLOWED}


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivacySettings:
    """The deployment's choices (``[privacy]``); defaults leave traffic without signals as it
    was: GDPR is assumed not to apply unless a request says so."""

    host_vendor_id: int | None = None  # the operator's own GVL vendor ID
    gdpr_default: bool = False  # does GDPR apply when a request does not say?
    honour_gpc: bool = True  # Sec-GPC: 1 as an opt-out of sale and sharing
    purposes: Mapping[Operation, frozenset[int]] = field(
        default_factory=lambda: {
            Operation.STORE_ID: frozenset({1}),
            Operation.SYNC: frozenset({1}),
            Operation.PERSONALISE: frozenset({2, 3, 4}),
        }
    )


MEMO_SIZE = 1024
"""Answers a policy remembers before it starts again from empty. An entry holds its signals
object (so that its ``id`` is not reused while it is there)."""


class PrivacyPolicy:
    """``decide`` answers for one operation and party; ``counts`` tallies the answers of this
    process by (operation, reason), for the metrics (a ``Counter`` unless one is given: the
    roots give the shared counts that ``/metrics`` adds up over a server's workers).

    An answer is a pure function of the settings and its arguments, so it is remembered per
    signals object: the signals of a request that says nothing (``SILENT``) and those read
    from a cache (``privacy/request.py``, the decoders) are one object each, and asking again
    costs a look-up. Every answer is counted, remembered or not.
    """

    def __init__(
        self,
        settings: PrivacySettings | None = None,
        counts: MutableMapping[tuple[Operation, Reason], int] | None = None,
    ) -> None:
        self.settings = settings or PrivacySettings()
        self._purposes = {op: tuple(sorted(p)) for op, p in self.settings.purposes.items()}
        self.counts: MutableMapping[tuple[Operation, Reason], int] = (
            Counter() if counts is None else counts
        )
        self.count = counter(self.counts)  # ``counts[key] += 1`` in one call
        self._memo: dict[tuple[int, Operation, int | None], tuple[ConsentSignals, Decision]] = {}

    def decide(
        self, operation: Operation, signals: ConsentSignals, vendor_id: int | None = None
    ) -> Decision:
        """May ``operation`` happen for the party whose GVL vendor ID is ``vendor_id`` (the
        host's for STORE_ID, which ignores ``vendor_id``)? The answer is counted."""
        hit = self._memo.get((id(signals), operation, vendor_id))  # answer's hit, inlined
        if hit is not None and hit[0] is signals:
            decision = hit[1]
        else:
            decision = self.answer(operation, signals, vendor_id)
        self.count((operation, decision.reason))
        return decision

    def answer(
        self, operation: Operation, signals: ConsentSignals, vendor_id: int | None = None
    ) -> Decision:
        """``decide``'s answer, not counted: for a caller that asks ahead of the request
        whose decision will be counted (a path prepared for one kind of request)."""
        key = (id(signals), operation, vendor_id)
        memo = self._memo
        hit = memo.get(key)
        if hit is not None and hit[0] is signals:
            decision = hit[1]
        else:
            decision = self._decide(operation, signals, vendor_id)
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[key] = (signals, decision)
        return decision

    def _decide(
        self, operation: Operation, signals: ConsentSignals, vendor_id: int | None
    ) -> Decision:
        settings = self.settings
        if signals.coppa:
            return _REFUSED[Reason.COPPA]
        if (
            signals.gdpr is False
            and signals.gpp is None
            and not signals.gpc
            and (signals.us_privacy is None)
        ):
            return _ALLOWED[Reason.NOT_REGULATED]
        gdpr = self._gdpr_applies(signals)
        if gdpr:
            if operation is Operation.STORE_ID:
                vendor_id = settings.host_vendor_id
                check_vendor = vendor_id is not None
            else:
                check_vendor = True
            purposes = self._purposes[operation]
            refused = _tcf(signals.tc_string, purposes, vendor_id, check_vendor)
            if refused is not None:
                return _REFUSED[refused]
        if operation is not Operation.STORE_ID:
            refused = _us(operation, signals, settings.honour_gpc)
            if refused is not None:
                return _REFUSED[refused]
        return _ALLOWED[Reason.CONSENTED if gdpr else Reason.NOT_REGULATED]

    def _gdpr_applies(self, signals: ConsentSignals) -> bool:
        if signals.gdpr is not None:
            return signals.gdpr
        gpp = signals.gpp
        if isinstance(gpp, GppString) and TCF_EU_V2 in in_force_sections(gpp, signals.gpp_sid):
            return True
        return self.settings.gdpr_default


def _tcf(
    tc: TCString | Undecodable | None,
    purposes: tuple[int, ...],
    vendor_id: int | None,
    check_vendor: bool,
) -> Reason | None:
    """Why the TC string refuses these purposes to this vendor, or None when it allows them."""
    if tc is None:
        return Reason.NO_CONSENT_STRING
    if isinstance(tc, Undecodable):
        return Reason.UNDECODABLE
    if check_vendor and vendor_id is None:
        return Reason.NO_VENDOR_ID
    for purpose in purposes:
        restriction = None if vendor_id is None else tc.restriction(purpose, vendor_id)
        if restriction is RestrictionType.NOT_ALLOWED:
            return Reason.PUBLISHER_RESTRICTION
        consent_only = purpose in CONSENT_ONLY or restriction is RestrictionType.REQUIRE_CONSENT
        interest_only = not consent_only and (
            restriction is RestrictionType.REQUIRE_LEGITIMATE_INTEREST
        )
        by_consent = not interest_only and tc.purpose_consent(purpose)
        by_interest = not consent_only and tc.purpose_legitimate_interest(purpose)
        if not (by_consent or by_interest):
            return Reason.PURPOSE
        if check_vendor and vendor_id is not None:
            vendor = (by_consent and tc.vendor_consent(vendor_id)) or (
                by_interest and tc.vendor_legitimate_interest(vendor_id)
            )
            if not vendor:
                return Reason.VENDOR
    return None


def _us(operation: Operation, signals: ConsentSignals, honour_gpc: bool) -> Reason | None:
    """Why a US signal refuses ``operation``, or None."""
    if honour_gpc and signals.gpc:
        return Reason.GPC
    usp = signals.us_privacy
    if isinstance(usp, Undecodable):
        return Reason.UNDECODABLE
    if usp is not None and usp.sale_opted_out:
        return Reason.US_OPT_OUT
    gpp = signals.gpp
    if isinstance(gpp, Undecodable):
        return Reason.UNDECODABLE
    if gpp is None:
        return None
    in_force = set(in_force_sections(gpp, signals.gpp_sid))
    for section_id, section in gpp.sections.items():
        opt_outs = section.opt_outs
        if section_id in in_force and opt_outs is not None:
            refused = _us_opt_out(operation, opt_outs, honour_gpc)
            if refused is not None:
                return refused
    return None


def _us_opt_out(operation: Operation, opt_outs: UsOptOuts, honour_gpc: bool) -> Reason | None:
    if honour_gpc and opt_outs.gpc:
        return Reason.GPC
    if OPTED_OUT in (opt_outs.sale_opt_out, opt_outs.sharing_opt_out):
        return Reason.US_OPT_OUT
    if operation is Operation.PERSONALISE and opt_outs.targeted_advertising_opt_out == OPTED_OUT:
        return Reason.US_OPT_OUT
    return None
