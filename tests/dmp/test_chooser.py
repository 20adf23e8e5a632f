"""The sync chooser: a status per partner, priority order, TTL, per-page limit, privacy."""

from __future__ import annotations

from cookiematch.dmp.chooser import SyncStatus, by_priority, choose
from cookiematch.dmp.model import Client
from cookiematch.protocol.privacy import NO_SIGNALS, PrivacySignals

from .helpers import NOW, PARTNERS, partner

SHOP = Client("shop")
ORDERED = by_priority(PARTNERS)


def statuses(decision: object) -> dict[str, str]:
    return {s.partner: s.status.value for s in decision.statuses}  # type: ignore[attr-defined]


def test_new_browser_gets_the_top_partners_up_to_the_limit() -> None:
    decision = choose(ORDERED, SHOP, {}, now=NOW, limit=3, privacy=NO_SIGNALS)
    assert [p.id for p in decision.chosen] == ["analytics", "email", "orders"]
    assert statuses(decision) == {
        "analytics": "sync", "email": "sync", "orders": "sync",
        "dsp": "over_limit", "off": "disabled",
    }  # fmt: skip


def test_fresh_partners_are_skipped_until_their_ttl_runs_out() -> None:
    synced = {"analytics": NOW - 6 * 86400, "orders": NOW - 31 * 86400}  # ttl 7 and 30 days
    decision = choose(ORDERED, SHOP, synced, now=NOW, limit=3, privacy=NO_SIGNALS)
    assert [p.id for p in decision.chosen] == ["email", "orders", "dsp"]
    assert decision.status("analytics") is SyncStatus.FRESH


def test_ties_keep_the_configured_order() -> None:
    tied = by_priority([partner("b"), partner("a"), partner("c", priority=1)])
    assert [p.id for p in tied] == ["c", "b", "a"]


def test_client_partner_list_and_zero_limit() -> None:
    blog = Client("blog", partners=frozenset({"orders"}))
    decision = choose(ORDERED, blog, {}, now=NOW, limit=3, privacy=NO_SIGNALS)
    assert [p.id for p in decision.chosen] == ["orders"]
    assert decision.status("analytics") is SyncStatus.NOT_FOR_CLIENT
    assert choose(ORDERED, SHOP, {}, now=NOW, limit=0, privacy=NO_SIGNALS).chosen == ()


def test_privacy_blocks_every_partner() -> None:
    no_consent = choose(ORDERED, SHOP, {}, now=NOW, limit=3, privacy=PrivacySignals(gdpr="1"))
    assert no_consent.chosen == () and no_consent.status("analytics") is SyncStatus.NO_CONSENT
    opted_out = PrivacySignals(us_privacy="1YYN")
    decision = choose(ORDERED, SHOP, {}, now=NOW, limit=3, privacy=opted_out)
    assert decision.chosen == () and decision.status("email") is SyncStatus.OPTED_OUT
    consented = PrivacySignals(gdpr="1", gdpr_consent="CPabc")
    assert len(choose(ORDERED, SHOP, {}, now=NOW, limit=3, privacy=consented).chosen) == 3
