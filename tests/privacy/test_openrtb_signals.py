"""A bid request's consent fields: OpenRTB 2.6 first, the 2.5 extensions where 2.6 says
nothing, and ``regs.coppa``."""

from __future__ import annotations

import json

import pytest

from cookiematch.privacy.openrtb import bid_privacy_params, bid_regs, bid_signals
from cookiematch.privacy.policy import Operation, PrivacyPolicy, PrivacySettings, Reason
from cookiematch.privacy.request import read_privacy
from cookiematch.privacy.signals import SILENT, child_directed
from cookiematch.protocol.openrtb import BidRequest, decode_bid_request
from cookiematch.protocol.query import QueryParam, parse_query
from cookiematch.protocol.tcf import TCString
from cookiematch.protocol.undecodable import Undecodable
from protocol.tcf_builder import core, id_bits, vendor_bitfield

HOST = 10
FULL = core(purpose_consents=id_bits(range(1, 11), 24), vendor_consents=vendor_bitfield(10, [HOST]))
NOTHING = core()
POLICY = PrivacyPolicy(PrivacySettings(host_vendor_id=HOST))


def bid_request(user: dict[str, object] | None, regs: dict[str, object] | None) -> BidRequest:
    body: dict[str, object] = {"id": "r1", "imp": [{"id": "1", "banner": {"w": 1, "h": 1}}]}
    if user is not None:
        body["user"] = user
    if regs is not None:
        body["regs"] = regs
    return decode_bid_request(json.dumps(body).encode())


def personalise(request: BidRequest) -> Reason:
    return POLICY.decide(Operation.PERSONALISE, bid_signals(request), HOST).reason


def test_openrtb_25_extensions_are_read_where_26_says_nothing() -> None:
    request = bid_request({"ext": {"consent": FULL}}, {"ext": {"gdpr": 1, "us_privacy": "1ynn"}})
    signals = bid_signals(request)
    assert signals.gdpr is True and isinstance(signals.tc, TCString)
    assert signals.us_privacy is not None and not isinstance(signals.us_privacy, Undecodable)
    assert personalise(request) is Reason.CONSENTED
    assert bid_privacy_params(request) == (
        QueryParam("gdpr", "1"),
        QueryParam("gdpr_consent", FULL),
        QueryParam("us_privacy", "1YNN"),
    )


def test_26_fields_win_over_the_extensions() -> None:
    request = bid_request(
        {"consent": NOTHING, "ext": {"consent": FULL}},
        {"gdpr": 1, "us_privacy": "1YYN", "ext": {"gdpr": 0, "us_privacy": "1NNN"}},
    )
    signals = bid_signals(request)
    assert signals.gdpr is True
    assert personalise(request) is not Reason.CONSENTED


def test_gpp_from_the_extensions() -> None:
    opted_out = "DBABLA~CAAQAAAAAABA.QA"  # US National, sale opt-out
    request = bid_request(None, {"ext": {"gpp": opted_out, "gpp_sid": [7]}})
    assert bid_signals(request).gpp_sid == (7,)
    assert personalise(request) is Reason.US_OPT_OUT


@pytest.mark.parametrize(
    ("user", "regs", "reason"),
    [
        (None, {"ext": {"gdpr": "yes"}}, Reason.NO_CONSENT_STRING),  # unreadable gdpr applies
        ({"ext": {"consent": 42}}, {"ext": {"gdpr": 1}}, Reason.UNDECODABLE),
        (None, {"ext": {"us_privacy": ["1YYN"]}}, Reason.UNDECODABLE),
    ],
)
def test_extension_fields_of_the_wrong_type_are_never_consent(
    user: dict[str, object] | None, regs: dict[str, object], reason: Reason
) -> None:
    request = bid_request(user, regs)
    assert personalise(request) is reason
    assert bid_privacy_params(request) is None or reason is Reason.NO_CONSENT_STRING


def test_extensions_without_consent_fields_stay_silent() -> None:
    assert bid_signals(bid_request({"ext": {"other": 1}}, {"ext": {"other": 1}})) is SILENT
    assert bid_signals(bid_request({"ext": {}}, None)) is SILENT


def test_coppa_refuses_everything_whatever_the_consent() -> None:
    request = bid_request({"consent": FULL}, {"gdpr": 1, "coppa": 1})
    signals = bid_signals(request)
    assert signals.coppa and isinstance(signals.tc, TCString)
    for operation in Operation:
        decision = POLICY.decide(operation, signals, HOST)
        assert (decision.allowed, decision.reason) == (False, Reason.COPPA)
    assert POLICY.decide(Operation.SYNC, bid_signals(bid_request(None, {"coppa": 1})), HOST) == (
        POLICY.decide(Operation.SYNC, signals, HOST)
    )
    assert bid_privacy_params(request) is None  # no match tag follows a child-directed bid
    assert not bid_signals(bid_request(None, {"coppa": 0})).coppa


def test_child_directed_signals_are_one_object_per_signals() -> None:
    signals = read_privacy(parse_query(f"gdpr=1&gdpr_consent={FULL}"), None).signals
    marked = child_directed(signals)
    assert marked.coppa and marked.tc is signals.tc and child_directed(signals) is marked
    assert child_directed(marked) is marked and child_directed(SILENT).coppa


def test_the_exchange_marks_a_child_directed_request() -> None:
    privacy = read_privacy(parse_query("gdpr=0"), None)
    regs, _ = bid_regs(privacy, coppa=True)
    assert regs is not None and (regs.coppa, regs.gdpr) == (1, 0)
    regs, _ = bid_regs(read_privacy(parse_query("p=1"), None), coppa=True)
    assert regs is not None and regs.coppa == 1 and regs.gdpr is None
    assert bid_regs(read_privacy(parse_query("p=1"), None)) == (None, None)
