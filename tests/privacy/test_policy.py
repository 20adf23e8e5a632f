"""The privacy policy: one answer, with its reason, for each operation, party and signals.

TC strings are hand-made bit by bit (``protocol/tcf_builder.py``); GPP strings were written by
the IAB's ``@iabgpp/cmpapi`` 3.2.0 (the fields set are in the comments)."""

from __future__ import annotations

import dataclasses

import pytest

from cookiematch.privacy.policy import (
    Decision,
    Operation,
    PrivacyPolicy,
    PrivacySettings,
    Reason,
)
from cookiematch.privacy.signals import SILENT, ConsentSignals, decode_signals
from cookiematch.protocol.privacy import PrivacySignals
from protocol.tcf_builder import core, id_bits, restrictions, vendor_bitfield

HOST, BUYER, OTHER = 10, 3, 5
STORE, SYNC, PERSONALISE = Operation.STORE_ID, Operation.SYNC, Operation.PERSONALISE

FULL = core(
    purpose_consents=id_bits(range(1, 11), 24),
    vendor_consents=vendor_bitfield(10, [HOST, BUYER]),
)
NOTHING = core(purpose_consents=id_bits([], 24), purpose_legitimate_interests=id_bits([], 24))
NO_PURPOSE_ONE = core(purpose_consents=id_bits(range(2, 11), 24))
LI_FOR_TWO = core(  # purpose 2 by legitimate interest only: its vendors need an LI too
    purpose_consents=id_bits([1, 3, 4], 24),
    purpose_legitimate_interests=id_bits([2, 3], 24),
    vendor_consents=vendor_bitfield(10, [HOST, BUYER]),
    vendor_legitimate_interests=vendor_bitfield(10, [HOST]),
)
RESTRICTED = core(
    purpose_consents=id_bits(range(1, 11), 24),
    vendor_consents=vendor_bitfield(10, [HOST, BUYER, OTHER]),
    publisher_restrictions=restrictions((1, 0, [(BUYER, BUYER)])),  # purpose 1: not allowed
)

US_SALE_OPT_OUT = "DBABLA~CAAQAAAAAABA.QA"  # usnat SaleOptOut=1
US_TARGETING_OPT_OUT = "DBABLA~CAApAAAAAABA.QA"  # usnat Sale=2, Sharing=2, TargetedAdv=1
US_NO_OPT_OUT = "DBABLA~CAAqAAAAAABA.QA"  # usnat Sale=2, Sharing=2, TargetedAdv=2
CA_SALE_OPT_OUT = "DBABBg~BAQAAABA.QA"  # usca SaleOptOut=1


def signals(sec_gpc: str | None = None, **params: str) -> ConsentSignals:
    return decode_signals(PrivacySignals(**params), sec_gpc)


def decide(
    operation: Operation,
    found: ConsentSignals,
    vendor: int | None = BUYER,
    settings: PrivacySettings | None = None,
) -> Decision:
    default = PrivacySettings(host_vendor_id=HOST)
    return PrivacyPolicy(settings or default).decide(operation, found, vendor)


@pytest.mark.parametrize("operation", list(Operation))
def test_no_signal_is_not_regulated_by_default(operation: Operation) -> None:
    assert decode_signals(PrivacySignals(), None) is SILENT
    assert decide(operation, SILENT) == Decision(True, Reason.NOT_REGULATED)


@pytest.mark.parametrize(
    ("operation", "found", "vendor", "expected"),
    [
        (STORE, signals(gdpr="1", gdpr_consent=FULL), None, (True, Reason.CONSENTED)),
        (SYNC, signals(gdpr="1", gdpr_consent=FULL), BUYER, (True, Reason.CONSENTED)),
        (SYNC, signals(gdpr="1", gdpr_consent=FULL), OTHER, (False, Reason.VENDOR)),
        (SYNC, signals(gdpr="1", gdpr_consent=FULL), None, (False, Reason.NO_VENDOR_ID)),
        (PERSONALISE, signals(gdpr="1", gdpr_consent=FULL), BUYER, (True, Reason.CONSENTED)),
        (STORE, signals(gdpr="1"), None, (False, Reason.NO_CONSENT_STRING)),
        (SYNC, signals(gdpr="1", gdpr_consent="AAAA"), BUYER, (False, Reason.UNDECODABLE)),
        (STORE, signals(gdpr="1", gdpr_consent=NOTHING), None, (False, Reason.PURPOSE)),
        (SYNC, signals(gdpr="1", gdpr_consent=NO_PURPOSE_ONE), BUYER, (False, Reason.PURPOSE)),
        # purpose 2 may rest on legitimate interest, purposes 1, 3 and 4 may not
        (PERSONALISE, signals(gdpr="1", gdpr_consent=LI_FOR_TWO), HOST, (True, Reason.CONSENTED)),
        (PERSONALISE, signals(gdpr="1", gdpr_consent=LI_FOR_TWO), BUYER, (False, Reason.VENDOR)),
        (SYNC, signals(gdpr="1", gdpr_consent=RESTRICTED), BUYER,
         (False, Reason.PUBLISHER_RESTRICTION)),
        (SYNC, signals(gdpr="1", gdpr_consent=RESTRICTED), OTHER, (True, Reason.CONSENTED)),
        # gdpr=0: the TC string is not read
        (SYNC, signals(gdpr="0", gdpr_consent="AAAA"), None, (True, Reason.NOT_REGULATED)),
    ],
)  # fmt: skip
def test_gdpr(
    operation: Operation, found: ConsentSignals, vendor: int | None, expected: tuple[bool, Reason]
) -> None:
    assert decide(operation, found, vendor) == Decision(*expected)


def test_the_host_cookie_checks_the_host_vendor_only_when_configured() -> None:
    without_host = core(purpose_consents=id_bits([1], 24), vendor_consents=vendor_bitfield(10, []))
    found = signals(gdpr="1", gdpr_consent=without_host)
    assert decide(STORE, found) == Decision(False, Reason.VENDOR)
    assert decide(STORE, found, settings=PrivacySettings()) == Decision(True, Reason.CONSENTED)


def test_gdpr_default_decides_when_the_request_does_not_say() -> None:
    eu = PrivacySettings(host_vendor_id=HOST, gdpr_default=True)
    assert decide(STORE, SILENT, settings=eu) == Decision(False, Reason.NO_CONSENT_STRING)
    assert decide(SYNC, signals(gdpr_consent=FULL), settings=eu) == Decision(True, Reason.CONSENTED)
    assert decide(SYNC, signals(gdpr="0"), settings=eu) == Decision(True, Reason.NOT_REGULATED)


@pytest.mark.parametrize(
    ("operation", "found", "expected"),
    [
        (SYNC, signals(us_privacy="1YYN"), (False, Reason.US_OPT_OUT)),
        (PERSONALISE, signals(us_privacy="1YYN"), (False, Reason.US_OPT_OUT)),
        (STORE, signals(us_privacy="1YYN"), (True, Reason.NOT_REGULATED)),  # not a sale
        (SYNC, signals(us_privacy="1YNN"), (True, Reason.NOT_REGULATED)),
        (SYNC, signals(us_privacy="1---"), (True, Reason.NOT_REGULATED)),
        (SYNC, signals(us_privacy="1Y-N"), (False, Reason.UNDECODABLE)),
        (SYNC, signals("1"), (False, Reason.GPC)),
        (STORE, signals("1"), (True, Reason.NOT_REGULATED)),
        (SYNC, signals("0"), (True, Reason.NOT_REGULATED)),
        (SYNC, signals(gpp=US_SALE_OPT_OUT, gpp_sid="7"), (False, Reason.US_OPT_OUT)),
        (SYNC, signals(gpp=US_SALE_OPT_OUT), (False, Reason.US_OPT_OUT)),  # no gpp_sid: all
        (SYNC, signals(gpp=US_SALE_OPT_OUT, gpp_sid="8"), (True, Reason.NOT_REGULATED)),
        (SYNC, signals(gpp=US_TARGETING_OPT_OUT, gpp_sid="7"), (True, Reason.NOT_REGULATED)),
        (PERSONALISE, signals(gpp=US_TARGETING_OPT_OUT, gpp_sid="7"),
         (False, Reason.US_OPT_OUT)),
        (PERSONALISE, signals(gpp=US_NO_OPT_OUT, gpp_sid="7"), (True, Reason.NOT_REGULATED)),
        (SYNC, signals(gpp=CA_SALE_OPT_OUT, gpp_sid="8"), (False, Reason.US_OPT_OUT)),
        (SYNC, signals(gpp="DBABLA~CAAQAA", gpp_sid="7"), (False, Reason.UNDECODABLE)),
        (SYNC, signals(gpp="DBABTA~1YYN", gpp_sid="6"), (False, Reason.US_OPT_OUT)),
    ],
)  # fmt: skip
def test_us_signals(
    operation: Operation, found: ConsentSignals, expected: tuple[bool, Reason]
) -> None:
    assert decide(operation, found) == Decision(*expected)


def test_gpc_can_be_switched_off_but_not_the_us_privacy_string() -> None:
    relaxed = PrivacySettings(host_vendor_id=HOST, honour_gpc=False)
    assert decide(SYNC, signals("1"), settings=relaxed) == Decision(True, Reason.NOT_REGULATED)
    assert decide(SYNC, signals("1", us_privacy="1YYN"), settings=relaxed).reason is (
        Reason.US_OPT_OUT
    )


def test_gdpr_and_us_signals_both_count() -> None:
    both = signals(gdpr="1", gdpr_consent=FULL, us_privacy="1YYN")
    assert decide(SYNC, both) == Decision(False, Reason.US_OPT_OUT)
    assert decide(STORE, both) == Decision(True, Reason.CONSENTED)


def test_the_gpp_tcf_section_counts_when_in_force() -> None:
    """The GPP carries the TC string in section 2; with gpp_sid 2 GDPR applies."""
    gpp_with_tc = "DBABMA~" + FULL  # header: one section, ID 2
    assert decide(SYNC, signals(gpp=gpp_with_tc, gpp_sid="2")) == Decision(True, Reason.CONSENTED)
    refused = "DBABMA~" + NO_PURPOSE_ONE
    assert decide(SYNC, signals(gpp=refused, gpp_sid="2")) == Decision(False, Reason.PURPOSE)
    assert decide(SYNC, signals(gpp=refused, gpp_sid="6")) == Decision(True, Reason.NOT_REGULATED)


def test_decisions_are_counted_by_operation_and_reason() -> None:
    policy = PrivacyPolicy(PrivacySettings(host_vendor_id=HOST))
    for found in (SILENT, signals(us_privacy="1YYN"), signals(us_privacy="1YYN")):
        policy.decide(SYNC, found, BUYER)
    assert policy.counts == {(SYNC, Reason.NOT_REGULATED): 1, (SYNC, Reason.US_OPT_OUT): 2}


def test_answers_are_remembered_per_signals_object_and_each_is_counted() -> None:
    policy = PrivacyPolicy(PrivacySettings(host_vendor_id=HOST, gdpr_default=True))
    consenting = signals(gdpr="1", gdpr_consent=FULL)
    for _ in range(3):
        assert policy.decide(STORE, SILENT) == Decision(False, Reason.NO_CONSENT_STRING)
        assert policy.decide(SYNC, consenting, BUYER) == Decision(True, Reason.CONSENTED)
        assert policy.decide(SYNC, consenting, OTHER) == Decision(False, Reason.VENDOR)
    assert policy.counts == {
        (STORE, Reason.NO_CONSENT_STRING): 3,
        (SYNC, Reason.CONSENTED): 3,
        (SYNC, Reason.VENDOR): 3,
    }
    assert signals(gdpr="1", gdpr_consent=FULL) is consenting  # decoded once, one object
    equal_but_new = dataclasses.replace(consenting)  # another object: decided afresh
    assert equal_but_new is not consenting and equal_but_new == consenting
    assert policy.decide(SYNC, equal_but_new, OTHER) == Decision(False, Reason.VENDOR)
