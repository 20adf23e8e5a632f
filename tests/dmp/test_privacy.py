"""Privacy signals of a sync request: validated, canonical, table-driven; then what the DMP's
use cases do under them (the privacy policy, asked for real, over a real SQLite store)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import msgspec
import pytest

from cookiematch.dmp.chooser import SyncStatus
from cookiematch.dmp.consent import ConsentMark, ProfileConsent
from cookiematch.dmp.events import EventType, ImpressionEvent
from cookiematch.dmp.partner_ids import seal
from cookiematch.dmp.service import CallbackStatus, DmpService, SyncResult
from cookiematch.errors import QueryError
from cookiematch.privacy.policy import Operation, PrivacyPolicy, PrivacySettings, Reason
from cookiematch.protocol.privacy import NO_SIGNALS, PrivacySignals, parse_privacy
from cookiematch.protocol.query import parse_query
from cookiematch.storage import Store
from protocol.tcf_builder import core, id_bits, vendor_bitfield

from .helpers import (
    ANALYTICS_VENDOR,
    CLIENTS,
    EMAIL_VENDOR,
    NOW,
    ORDERS_VENDOR,
    PARTNERS,
    FakeClock,
    consent,
    make_service,
)

SHOP = CLIENTS[0]
STORED = CallbackStatus.STORED

TCF = "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA.YAAAAAAAAAAA"

VALID = [
    ("", NO_SIGNALS),
    ("client=shop&other=1", NO_SIGNALS),
    ("gdpr=0", PrivacySignals(gdpr="0")),
    (f"gdpr=1&gdpr_consent={TCF}", PrivacySignals(gdpr="1", gdpr_consent=TCF)),
    ("us_privacy=1ynn", PrivacySignals(us_privacy="1YNN")),
    ("us_privacy=1---", PrivacySignals(us_privacy="1---")),
    ("gpp=DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA&gpp_sid=2,6",
     PrivacySignals(gpp="DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA", gpp_sid="2,6")),
    ("gpp_sid=-1", PrivacySignals(gpp_sid="-1")),
    ("gdpr=&gdpr_consent&us_privacy=", NO_SIGNALS),  # empty or valueless: absent
]  # fmt: skip

INVALID = [
    "gdpr=2",
    "gdpr=true",
    "gdpr=1&gdpr=1",
    "gdpr_consent=abc%20def",
    "gdpr_consent=" + "A" * 2049,
    "us_privacy=2YNN",
    "us_privacy=1YN",
    "us_privacy=1YNX",
    "gpp=DBA%3CMA",
    "gpp_sid=2;6",
    "gpp_sid=2,,6",
    "gpp_sid=a",
    "gpp_sid=" + ",".join(["1"] * 33),
]


@pytest.mark.parametrize(("query", "expected"), VALID)
def test_valid(query: str, expected: PrivacySignals) -> None:
    assert parse_privacy(parse_query(query)) == expected


@pytest.mark.parametrize("query", INVALID)
def test_invalid(query: str) -> None:
    with pytest.raises(QueryError):
        parse_privacy(parse_query(query))


def test_derived_flags_and_params() -> None:
    signals = parse_privacy(parse_query("us_privacy=1NYN&gdpr=1"))
    assert signals.sale_opted_out and signals.gdpr_applies
    assert [(p.name, p.value) for p in signals.params()] == [("gdpr", "1"), ("us_privacy", "1NYN")]
    assert not parse_privacy(parse_query("us_privacy=1YNN")).sale_opted_out


# --- enforcement: the DMP asks the privacy policy (docs/privacy.md, "Enforcement: the DMP") ---
#
# TC strings are written bit by bit (tests/protocol/tcf_builder.py); the GPP strings were
# written by the IAB's @iabgpp/cmpapi 3.2.0 (fields in the comments).

ALL_THREE = core(  # purpose 1, and the vendors of analytics, email and orders
    purpose_consents=id_bits([1], 24),
    vendor_consents=vendor_bitfield(10, [ANALYTICS_VENDOR, EMAIL_VENDOR, ORDERS_VENDOR]),
)
GRANTS_NOTHING = core(
    purpose_consents=id_bits([], 24),
    purpose_legitimate_interests=id_bits([], 24),
    vendor_consents=vendor_bitfield(10, []),
)
TC_LAST_UPDATED = 1_700_086_400.0  # tcf_builder's LastUpdated, 17_000_864_000 deciseconds
# tcfeuv2: PurposeConsents [1], VendorConsents [7, 8, 9], CmpId 300 (LastUpdated: the day the
# library wrote it, 2026-12-02)
GPP_ALL_THREE = "DBABMA~CQumbsAQumbsAEsAHAENCMFgAIAAAAAAAAAAAEgOAAAAAAAA.IAAA.YAAAAAAAAAAA"
GPP_NO_PURPOSE = "DBABMA~CQumbsAQumbsAEsAHAENCMFgAAAAAAAAAAAAAEgOAAAAAAAA.IAAA.YAAAAAAAAAAA"
GPP_US_SALE_OPT_OUT = "DBABLA~BEAQAAAAAgA.QA"  # usnat v1: SaleOptOutNotice 1, SaleOptOut 1
GPP_US_NO_OPT_OUT = "DBABLA~BEAqAAAAAgA.QA"  # usnat v1: SaleOptOut 2, Sharing 2, Targeted 2
EVERY_PARTNER = {"analytics", "email", "orders", "dsp"}


def refusals(result: SyncResult) -> dict[str, str]:
    return {p: r.value for p, r in result.decision.refused().items()}


async def test_no_signal_leaves_the_story_unchanged(service: DmpService) -> None:
    result = await service.sync(SHOP, None, consent(service))
    assert result.new_browser and result.dmp_uid is not None
    assert len(result.pixels) == 3 and refusals(result) == {}
    callback = dict(parse_qsl(urlsplit(result.pixels[0]).query))["redir"]
    assert callback == "http://dmp.localhost:8720/callback/analytics?c=shop&uid=$UID"
    uid = result.dmp_uid
    assert await service.callback("analytics", uid, "A-1", consent=consent(service)) is STORED
    profile = await service.profile(uid)
    assert profile is not None and profile.consent is msgspec.UNSET
    assert "consent" not in msgspec.json.decode(msgspec.json.encode(profile))


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"gdpr": "1", "gdpr_consent": "AAAA"}, "undecodable"),
        ({"gdpr": "1", "gdpr_consent": GRANTS_NOTHING}, "purpose_not_allowed"),
        ({"gdpr": "1"}, "no_consent_string"),
        ({"gpp": GPP_NO_PURPOSE, "gpp_sid": "2"}, "purpose_not_allowed"),
    ],
)
async def test_without_consent_for_the_dmp_cookie_the_browser_stays_unknown(
    service: DmpService, params: dict[str, str], reason: str
) -> None:
    result = await service.sync(SHOP, "known-uid-0000000000000", consent(service, **params))
    assert result.dmp_uid is None and not result.new_browser and result.pixels == ()
    assert result.store_id.reason.value == reason
    assert refusals(result) == dict.fromkeys(EVERY_PARTNER, reason)
    refused = consent(service, **params)
    status = await service.callback("analytics", "known-uid-0000000000000", "A-1", consent=refused)
    assert status is CallbackStatus.PRIVACY
    assert await service.profile("known-uid-0000000000000") is None
    assert (await service.audiences("known-uid-0000000000000", refused)).refused is not None


@pytest.mark.parametrize(
    ("sec_gpc", "params", "reason"),
    [
        (None, {"us_privacy": "1YYN"}, "us_opt_out"),
        ("1", {}, "gpc"),
        (None, {"gpp": GPP_US_SALE_OPT_OUT, "gpp_sid": "7"}, "us_opt_out"),
        (None, {"gdpr": "0", "us_privacy": "1YYN"}, "us_opt_out"),
    ],
)
async def test_a_us_opt_out_syncs_no_partner_but_keeps_the_dmp_cookie(
    service: DmpService, sec_gpc: str | None, params: dict[str, str], reason: str
) -> None:
    opted_out = consent(service, sec_gpc, **params)
    result = await service.sync(SHOP, None, opted_out)
    assert result.dmp_uid is not None and result.store_id.allowed  # keeping our cookie: no sale
    assert result.pixels == ()
    assert refusals(result) == dict.fromkeys(EVERY_PARTNER, reason)
    uid = result.dmp_uid
    assert await service.callback("analytics", uid, "A-1", consent=opted_out) is (
        CallbackStatus.PRIVACY
    )
    assert await service.inband("analytics", uid, "A-1", "tier:gold", consent=opted_out) is (
        CallbackStatus.PRIVACY
    )
    assert await service.profile(uid) is None  # nothing stored
    await service.impression(uid, ImpressionEvent(EventType.CLICK, "c1"))
    answer = await service.audiences(uid, opted_out)
    assert answer.kv == {} and answer.refused is not None and answer.refused.value == reason
    report = await service.funnel_report()
    assert report.partners["analytics"].counts["rejected"] == 2
    assert report.other["rejected_privacy"] == 2


@pytest.mark.parametrize(
    "params",
    [
        {"gdpr": "1", "gdpr_consent": ALL_THREE},
        {"gpp": GPP_ALL_THREE, "gpp_sid": "2"},  # GDPR applies: section 2 is in force
        {"us_privacy": "1YNN"},
        {"gpp": GPP_US_NO_OPT_OUT, "gpp_sid": "7"},
    ],
)
async def test_with_consent_the_story_is_unchanged(
    service: DmpService, params: dict[str, str]
) -> None:
    allowed = consent(service, **params)
    result = await service.sync(SHOP, None, allowed)
    assert result.dmp_uid is not None
    assert [p.id for p in result.decision.chosen] == ["analytics", "email", "orders"]
    gdpr = "gdpr" in params or params.get("gpp_sid") == "2"
    assert refusals(result) == ({"dsp": "party_without_vendor_id"} if gdpr else {})
    uid = result.dmp_uid
    assert await service.callback("analytics", uid, "A-1", consent=allowed) is STORED
    profile = await service.profile(uid)
    assert profile is not None and profile.partners == {"analytics": "A-1"}
    answer = await service.audiences(uid, consent(service, **params))
    if gdpr:  # personalising needs purposes 2-4 and the DMP's own vendor ID: none configured
        assert answer.kv == {} and answer.refused is Reason.NO_VENDOR_ID
    else:
        assert answer.kv == {"dmp_partners": ["analytics"]} and answer.refused is None


async def test_the_callback_carries_the_signals_of_the_sync(service: DmpService) -> None:
    params = {"gdpr": "1", "gdpr_consent": ALL_THREE, "us_privacy": "1YNN"}
    result = await service.sync(SHOP, None, consent(service, **params))
    callback = dict(parse_qsl(urlsplit(result.pixels[0]).query))["redir"]
    assert callback == (
        "http://dmp.localhost:8720/callback/analytics?c=shop"
        f"&gdpr=1&gdpr_consent={ALL_THREE}&us_privacy=1YNN&uid=$UID"
    )
    query = dict(parse_qsl(urlsplit(callback.replace("$UID", "A-1")).query))
    again = consent(service, **{k: v for k, v in query.items() if k in params})
    assert result.dmp_uid is not None
    assert await service.callback("analytics", result.dmp_uid, query["uid"], consent=again) is (
        STORED
    )


async def test_consent_is_marked_on_the_profile(service: DmpService, clock: FakeClock) -> None:
    allowed = consent(service, gdpr="1", gdpr_consent=ALL_THREE)
    result = await service.sync(SHOP, None, allowed)
    uid = result.dmp_uid
    assert uid is not None
    profile = await service.profile(uid)
    assert profile is not None and not isinstance(profile.consent, msgspec.UnsetType)
    mark = ConsentMark(at=NOW, tc_last_updated=TC_LAST_UPDATED)
    no_vendor_id = ConsentMark(NOW, TC_LAST_UPDATED, refused=True)  # the dsp: the latest answer
    assert profile.consent == ProfileConsent(
        dmp_cookie=mark,
        partners={"analytics": mark, "email": mark, "orders": mark, "dsp": no_vendor_id},
    )
    clock.now += 60
    gpp = consent(service, gpp=GPP_ALL_THREE, gpp_sid="2")
    assert await service.callback("analytics", uid, "A-1", consent=gpp) is STORED
    later = await service.profile(uid)
    assert later is not None and not isinstance(later.consent, msgspec.UnsetType)
    assert later.consent.partners["analytics"] == ConsentMark(NOW + 60, 1_796_169_600.0)
    assert later.consent.partners["email"] == mark
    shown = msgspec.json.decode(msgspec.json.encode(later))["consent"]
    assert shown["dmp_cookie"] == {"at": NOW + 60, "tc_last_updated": 1_796_169_600.0}


async def test_under_gdpr_a_partner_without_consent_is_not_stored(service: DmpService) -> None:
    only_analytics = core(
        purpose_consents=id_bits([1], 24),
        vendor_consents=vendor_bitfield(10, [ANALYTICS_VENDOR]),
    )
    allowed = consent(service, gdpr="1", gdpr_consent=only_analytics)
    result = await service.sync(SHOP, None, allowed)
    assert [p.id for p in result.decision.chosen] == ["analytics"]
    assert result.decision.status("email") is SyncStatus.PRIVACY
    assert result.decision.reason("email") is Reason.VENDOR
    uid = result.dmp_uid
    assert uid is not None
    signed = seal(next(p for p in PARTNERS if p.id == "email"), "E-1", NOW)
    assert await service.callback("email", uid, signed, consent=allowed) is CallbackStatus.PRIVACY
    assert await service.callback("analytics", uid, "A-1", consent=allowed) is STORED
    profile = await service.profile(uid)
    assert profile is not None and profile.partners == {"analytics": "A-1"}


async def test_the_policy_counts_every_decision(store: Store, clock: FakeClock) -> None:
    policy = PrivacyPolicy(PrivacySettings(host_vendor_id=ANALYTICS_VENDOR))
    service = make_service(store, clock, policy=policy)
    await service.sync(SHOP, None, consent(service))
    await service.sync(SHOP, None, consent(service, us_privacy="1YYN"))
    await service.sync(SHOP, None, consent(service, gdpr="1", gdpr_consent="AAAA"))
    assert policy.counts == {
        (Operation.STORE_ID, Reason.NOT_REGULATED): 2,
        (Operation.SYNC, Reason.NOT_REGULATED): 4,  # every enabled partner of the client
        (Operation.SYNC, Reason.US_OPT_OUT): 4,
        (Operation.STORE_ID, Reason.UNDECODABLE): 1,  # then no partner is asked about
    }


async def test_gdpr_default_judges_a_request_that_says_nothing(
    store: Store, clock: FakeClock
) -> None:
    eu = make_service(store, clock, policy=PrivacyPolicy(PrivacySettings(gdpr_default=True)))
    result = await eu.sync(SHOP, None, consent(eu))
    assert result.dmp_uid is None and result.store_id.reason is Reason.NO_CONSENT_STRING
    with_consent = await eu.sync(SHOP, None, consent(eu, gdpr_consent=ALL_THREE))
    assert len(with_consent.pixels) == 3


async def test_audiences_under_gdpr_need_personalisation_for_the_dmp(
    store: Store, clock: FakeClock
) -> None:
    host = 4  # the DMP's own GVL vendor ID
    service = make_service(store, clock, policy=PrivacyPolicy(PrivacySettings(host_vendor_id=host)))
    personalised = core(
        purpose_consents=id_bits([1, 2, 3, 4], 24),
        vendor_consents=vendor_bitfield(10, [host, ANALYTICS_VENDOR]),
    )
    allowed = consent(service, gdpr="1", gdpr_consent=personalised)
    uid = (await service.sync(SHOP, None, allowed)).dmp_uid
    assert uid is not None
    assert await service.callback("analytics", uid, "A-1", consent=allowed) is STORED
    assert (await service.audiences(uid, allowed)).kv == {"dmp_partners": ["analytics"]}
    purpose_one = core(
        purpose_consents=id_bits([1], 24),
        purpose_legitimate_interests=id_bits([], 24),
        vendor_consents=vendor_bitfield(10, [host]),
    )
    sync_only = consent(service, gdpr="1", gdpr_consent=purpose_one)
    assert sync_only.store_id.allowed
    answer = await service.audiences(uid, sync_only)
    assert answer.kv == {} and answer.refused is Reason.PURPOSE
