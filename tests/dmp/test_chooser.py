"""The sync chooser: a status per partner, priority order, TTL, per-page limit, and the privacy
policy's answer for each partner (with its reason), asked of a real ``PrivacyPolicy``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cookiematch.dmp.chooser import SyncDecision, SyncStatus, by_priority, choose
from cookiematch.dmp.model import Client, Partner
from cookiematch.privacy.policy import Decision, Operation, PrivacyPolicy, Reason
from cookiematch.privacy.signals import ConsentSignals, decode_signals
from cookiematch.protocol.privacy import PrivacySignals
from protocol.tcf_builder import core, id_bits, vendor_bitfield

from .helpers import ANALYTICS_VENDOR, EMAIL_VENDOR, NOW, PARTNERS, partner

SHOP = Client("shop")
ORDERED = by_priority(PARTNERS)

# TC strings written bit by bit (tests/protocol/tcf_builder.py)
GRANTS_NOTHING = core(
    purpose_consents=id_bits([], 24),
    purpose_legitimate_interests=id_bits([], 24),
    vendor_consents=vendor_bitfield(10, []),
)
PURPOSE_ONE_ANALYTICS_EMAIL = core(
    purpose_consents=id_bits([1], 24),
    vendor_consents=vendor_bitfield(10, [ANALYTICS_VENDOR, EMAIL_VENDOR]),
)


def allow(sec_gpc: str | None = None, **params: str) -> Callable[[Partner], Decision]:
    """The question the service asks the chooser to put: SYNC for the partner's vendor."""
    policy = PrivacyPolicy()
    signals: ConsentSignals = decode_signals(PrivacySignals(**params), sec_gpc)
    return lambda p: policy.decide(Operation.SYNC, signals, p.gvl_vendor_id)


def statuses(decision: SyncDecision) -> dict[str, str]:
    return {s.partner: s.status.value for s in decision.statuses}


def test_new_browser_gets_the_top_partners_up_to_the_limit() -> None:
    decision = choose(ORDERED, SHOP, {}, now=NOW, limit=3, allow=allow())
    assert [p.id for p in decision.chosen] == ["analytics", "email", "orders"]
    assert statuses(decision) == {
        "analytics": "sync", "email": "sync", "orders": "sync",
        "dsp": "over_limit", "off": "disabled",
    }  # fmt: skip
    assert decision.reason("analytics") is Reason.NOT_REGULATED
    assert decision.reason("off") is None  # the policy was not asked
    assert decision.refused() == {}


def test_fresh_partners_are_skipped_until_their_ttl_runs_out() -> None:
    synced = {"analytics": NOW - 6 * 86400, "orders": NOW - 31 * 86400}  # ttl 7 and 30 days
    decision = choose(ORDERED, SHOP, synced, now=NOW, limit=3, allow=allow())
    assert [p.id for p in decision.chosen] == ["email", "orders", "dsp"]
    assert decision.status("analytics") is SyncStatus.FRESH


def test_ties_keep_the_configured_order() -> None:
    tied = by_priority([partner("b"), partner("a"), partner("c", priority=1)])
    assert [p.id for p in tied] == ["c", "b", "a"]


def test_client_partner_list_and_zero_limit() -> None:
    blog = Client("blog", partners=frozenset({"orders"}))
    decision = choose(ORDERED, blog, {}, now=NOW, limit=3, allow=allow())
    assert [p.id for p in decision.chosen] == ["orders"]
    assert decision.status("analytics") is SyncStatus.NOT_FOR_CLIENT
    assert choose(ORDERED, SHOP, {}, now=NOW, limit=0, allow=allow()).chosen == ()


@pytest.mark.parametrize(
    ("found", "reason"),
    [
        (allow(gdpr="1"), Reason.NO_CONSENT_STRING),
        (allow(gdpr="1", gdpr_consent="AAAA"), Reason.UNDECODABLE),
        (allow(gdpr="1", gdpr_consent=GRANTS_NOTHING), Reason.PURPOSE),
        (allow(us_privacy="1YYN"), Reason.US_OPT_OUT),
        (allow("1"), Reason.GPC),
    ],
)
def test_signals_that_refuse_every_partner(
    found: Callable[[Partner], Decision], reason: Reason
) -> None:
    decision = choose(ORDERED, SHOP, {}, now=NOW, limit=3, allow=found)
    assert decision.chosen == ()
    refused = decision.refused()
    assert set(refused) == {"analytics", "email", "orders", "dsp"}
    assert {refused["analytics"], refused["email"], refused["orders"]} == {reason}
    assert decision.status("off") is SyncStatus.DISABLED


def test_consent_for_some_vendors_syncs_those_and_says_why_not_the_others() -> None:
    found = allow(gdpr="1", gdpr_consent=PURPOSE_ONE_ANALYTICS_EMAIL)
    decision = choose(ORDERED, SHOP, {}, now=NOW, limit=3, allow=found)
    assert [p.id for p in decision.chosen] == ["analytics", "email"]
    assert decision.reason("analytics") is Reason.CONSENTED
    assert decision.refused() == {"orders": Reason.VENDOR, "dsp": Reason.NO_VENDOR_ID}


def test_a_refused_partner_leaves_its_slot_to_the_next() -> None:
    found = allow(gdpr="1", gdpr_consent=PURPOSE_ONE_ANALYTICS_EMAIL)
    fresh = {"analytics": NOW - 86400}
    decision = choose(ORDERED, SHOP, fresh, now=NOW, limit=1, allow=found)
    assert [p.id for p in decision.chosen] == ["email"]
    assert statuses(decision) == {
        "analytics": "fresh", "email": "sync", "orders": "privacy", "dsp": "privacy",
        "off": "disabled",
    }  # fmt: skip
