"""The buyer under the privacy policy: opt-out erasure, its own cookie (STORE_ID) on /match,
/push and /matchtag, and personalisation (PERSONALISE) at bid time.

TC strings are hand-made bit by bit (``protocol/tcf_builder.py``); GPP strings were written by
the IAB's ``@iabgpp/cmpapi`` 3.2.0 (the fields set are in the comments)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from cookiematch.buyer.bidder import Bidder
from cookiematch.buyer.matching import RedirectParams
from cookiematch.buyer.matchtable import MatchTable
from cookiematch.buyer.matchtag import TagReason
from cookiematch.privacy.openrtb import bid_privacy_params, bid_signals
from cookiematch.privacy.policy import Operation, PrivacyPolicy, PrivacySettings, Reason
from cookiematch.privacy.request import read_privacy
from cookiematch.privacy.signals import SILENT, ConsentSignals, decode_signals
from cookiematch.protocol.openrtb import BidRequest, decode_bid_request
from cookiematch.protocol.privacy import PrivacySignals
from cookiematch.protocol.query import QueryParam, parse_query
from cookiematch.protocol.tcf import TCString
from cookiematch.protocol.undecodable import Undecodable
from protocol.tcf_builder import core, id_bits, vendor_bitfield

from .conftest import EXCHANGE_URL, GID, NID, PROSPECT, RETARGET, MakeBidder, MakeMatcher, Uids

HOST, OTHER = 7, 9  # the buyer's GVL vendor ID, and someone else's
UID = bytes(range(16))
OTHER_UID = bytes(range(1, 17))
OTHER_GID = "b3RoZXItZ2lk"

# purposes 1-4 and the buyer's vendor consent: everything the buyer asks for
FULL = core(purpose_consents=id_bits(range(1, 11), 24), vendor_consents=vendor_bitfield(10, [HOST]))
# purpose 1 only: the buyer may keep its cookie, not personalise
STORE_ONLY = core(
    purpose_consents=id_bits([1], 24),
    purpose_legitimate_interests=id_bits([], 24),
    vendor_consents=vendor_bitfield(10, [HOST]),
)
# every purpose, another vendor
OTHER_VENDOR = core(
    purpose_consents=id_bits(range(1, 11), 24), vendor_consents=vendor_bitfield(10, [OTHER])
)
US_SALE_OPT_OUT = "DBABLA~CAAQAAAAAABA.QA"  # usnat SaleOptOut=1
US_NO_OPT_OUT = "DBABLA~CAAqAAAAAABA.QA"  # usnat Sale=2, Sharing=2, TargetedAdv=2


def policy(host: int | None = HOST, **settings: Any) -> PrivacyPolicy:
    return PrivacyPolicy(PrivacySettings(host_vendor_id=host, **settings))


def signals(sec_gpc: str | None = None, **params: str) -> ConsentSignals:
    return decode_signals(PrivacySignals(**params), sec_gpc)


def redirect(query: str) -> RedirectParams:
    return RedirectParams.parse(parse_query(query))


def bid_request(
    user: dict[str, object] | None = None, regs: dict[str, object] | None = None
) -> BidRequest:
    body: dict[str, object] = {"id": "r1", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}]}
    if user is not None:
        body["user"] = user
    if regs is not None:
        body["regs"] = regs
    return decode_bid_request(json.dumps(body).encode())


# -- signals of a bid request ----------------------------------------------------------------


def test_a_bid_request_without_signals_is_silent() -> None:
    assert bid_signals(bid_request()) is SILENT
    assert bid_signals(bid_request({"id": GID})) is SILENT
    assert bid_signals(bid_request({"id": GID, "consent": ""}, {"coppa": 0})) is SILENT
    assert bid_privacy_params(bid_request({"id": GID})) == ()


def test_bid_signals_read_regs_and_user_consent() -> None:
    found = bid_signals(
        bid_request(
            {"id": GID, "consent": FULL},
            {"gdpr": 1, "us_privacy": "1ynn", "gpp": US_NO_OPT_OUT, "gpp_sid": [7]},
        )
    )
    assert found.gdpr is True and isinstance(found.tc, TCString)
    assert found.gpp_sid == (7,) and not isinstance(found.gpp, Undecodable)
    assert found.us_privacy is not None and not isinstance(found.us_privacy, Undecodable)
    assert not found.gpc
    # the same strings decode to the same cached values
    again = bid_signals(bid_request({"consent": FULL}, {"gdpr": 1}))
    assert again.tc is found.tc


@pytest.mark.parametrize(
    ("regs", "gdpr"), [({"gdpr": 0}, False), ({"gdpr": 1}, True), ({"gdpr": 2}, True), ({}, None)]
)
def test_regs_gdpr_other_than_zero_says_gdpr_applies(
    regs: dict[str, object], gdpr: bool | None
) -> None:
    assert bid_signals(bid_request({"consent": FULL}, regs)).gdpr is gdpr


def test_an_overlong_gpp_sid_puts_every_section_in_force() -> None:
    found = bid_signals(bid_request(regs={"gpp": US_SALE_OPT_OUT, "gpp_sid": list(range(33))}))
    assert found.gpp_sid is None
    assert bid_signals(bid_request(regs={"gpp": US_SALE_OPT_OUT, "gpp_sid": []})).gpp_sid is None


def test_bid_privacy_params_are_the_url_parameters_of_the_same_signals() -> None:
    req = bid_request({"consent": FULL}, {"gdpr": 1, "us_privacy": "1ynn", "gpp_sid": [2, 6]})
    assert bid_privacy_params(req) == (
        QueryParam("gdpr", "1"),
        QueryParam("gdpr_consent", FULL),
        QueryParam("us_privacy", "1YNN"),
        QueryParam("gpp_sid", "2,6"),
    )
    # a value that cannot travel in a URL: no parameters (and so no match tag)
    assert bid_privacy_params(bid_request({"consent": "not a TC string"}, {"gdpr": 1})) is None


# -- google_error=1: opt-out erasure -------------------------------------------------------


async def test_opt_out_erases_the_cookies_entry_both_ways(make_matcher: MakeMatcher) -> None:
    matcher = make_matcher()
    await matcher.redirect(redirect(f"google_gid={GID}&google_cver=1"), UID)
    result = await matcher.redirect(redirect("google_error=1"), UID)
    assert result.outcome == "error_1" and result.browser is None and not result.may_store
    assert await matcher.table.by_gid(GID) is None
    assert await matcher.table.by_uid(UID) is None
    assert matcher.stats.get("opt_out", "erased") == 1
    assert matcher.stats.get("match", "error_1") == 1


async def test_opt_out_erases_a_known_gid_without_a_cookie(make_matcher: MakeMatcher) -> None:
    matcher = make_matcher()
    await matcher.redirect(redirect(f"google_gid={GID}&google_cver=1"), UID)
    await matcher.redirect(redirect(f"google_gid={OTHER_GID}&google_cver=1"), OTHER_UID)
    await matcher.redirect(redirect(f"google_error=1&google_gid={GID}"), None)
    assert await matcher.table.by_gid(GID) is None
    assert await matcher.table.by_uid(UID) is None
    # another browser's entry is untouched
    assert (await matcher.table.by_gid(OTHER_GID)).uid == OTHER_UID  # type: ignore[union-attr]


async def test_opt_out_with_a_gid_and_a_cookie_of_different_entries_erases_both(
    make_matcher: MakeMatcher,
) -> None:
    matcher = make_matcher()
    await matcher.redirect(redirect(f"google_gid={GID}&google_cver=1"), UID)
    await matcher.redirect(redirect(f"google_gid={OTHER_GID}&google_cver=1"), OTHER_UID)
    await matcher.redirect(redirect(f"google_error=1&google_gid={GID}"), OTHER_UID)
    for gid in (GID, OTHER_GID):
        assert await matcher.table.by_gid(gid) is None
    for uid in (UID, OTHER_UID):
        assert await matcher.table.by_uid(uid) is None


@pytest.mark.parametrize("query", ["google_error=1", "google_error=1&google_gid=!!"])
async def test_opt_out_of_an_unknown_browser_writes_nothing_and_sets_no_cookie(
    make_matcher: MakeMatcher, uids: Uids, query: str
) -> None:
    matcher = make_matcher()
    for uid in (None, UID):
        result = await matcher.redirect(redirect(query), uid)
        assert result.outcome == "error_1" and result.browser is None
    assert uids.issued == []
    assert matcher.stats.get("opt_out", "nothing_known") == 2


async def test_opt_out_on_push_goes_back_without_a_cookie_or_hosted_data(
    make_matcher: MakeMatcher, uids: Uids
) -> None:
    matcher = make_matcher(hosted=True)
    await matcher.redirect(redirect(f"google_gid={GID}&google_cver=1"), UID)
    result = await matcher.push(redirect("google_error=1&google_push=tok"), UID)
    assert result.location == f"{EXCHANGE_URL}?google_nid={NID}&google_push=tok"
    assert result.match.browser is None
    assert await matcher.table.by_uid(UID) is None
    pushed = await matcher.push(redirect("google_error=1&google_push=tok"), None)
    assert pushed.match.browser is None and uids.issued == []


async def test_opt_out_erases_in_both_layouts(table: MatchTable) -> None:
    await table.record(GID, UID, 1)
    await table.record(OTHER_GID, OTHER_UID, 1)
    assert await table.erase(uids=[bytes(16)]) == (0, 0)
    # the gid's entry, its uid's, and everything about OTHER_UID
    assert await table.erase([GID], [OTHER_UID]) == (2, 2)
    lookup = await table.lookup(GID, UID)
    assert lookup.by_gid is None and lookup.by_uid is None
    assert await table.by_gid(OTHER_GID) is None
    await table.record(GID, UID, 2)  # the browser comes back: matched anew
    assert (await table.by_uid(UID)).cver == 2  # type: ignore[union-attr]


# -- STORE_ID: the buyer's own cookie on /match, /push, /matchtag -----------------------------

REFUSED_STORE = [
    (signals(gdpr="1"), "no_consent_string"),
    (signals(gdpr="1", gdpr_consent="AAAA"), "undecodable"),
    (signals(gdpr="1", gdpr_consent=OTHER_VENDOR), "vendor_not_allowed"),
    (read_privacy(parse_query("gdpr=1&gdpr_consent=not!a!tc"), None).signals, "undecodable"),
]


@pytest.mark.parametrize(("found", "reason"), REFUSED_STORE)
async def test_refused_store_id_writes_nothing_and_sets_no_cookie(
    make_matcher: MakeMatcher, uids: Uids, found: ConsentSignals, reason: str
) -> None:
    matcher = make_matcher(policy=policy())
    result = await matcher.redirect(redirect(f"google_gid={GID}&google_cver=1"), UID, found)
    assert result.outcome == f"refused_{reason}" and result.browser is None
    assert not result.may_store
    fresh = await matcher.redirect(redirect(f"google_gid={GID}&google_cver=1"), None, found)
    assert fresh.browser is None and uids.issued == []
    assert await matcher.table.by_gid(GID) is None
    assert matcher.stats.get("match", f"refused_{reason}") == 2


@pytest.mark.parametrize(
    "found",
    [
        signals(gdpr="1", gdpr_consent=FULL),
        signals(gdpr="1", gdpr_consent=STORE_ONLY),
        signals(gdpr="0"),
        signals(us_privacy="1YYN"),  # keeping one's own cookie is not a sale
        signals("1"),  # nor is it under GPC
        signals(gpp=US_SALE_OPT_OUT, gpp_sid="7"),
    ],
)
async def test_allowed_store_id_records_as_today(
    make_matcher: MakeMatcher, found: ConsentSignals
) -> None:
    matcher = make_matcher(policy=policy())
    result = await matcher.redirect(redirect(f"google_gid={GID}&google_cver=1"), UID, found)
    assert result.outcome == "recorded" and result.may_store
    assert (await matcher.table.by_gid(GID)).uid == UID  # type: ignore[union-attr]


async def test_without_a_host_vendor_id_only_the_purposes_are_checked(
    make_matcher: MakeMatcher,
) -> None:
    matcher = make_matcher(policy=policy(host=None))
    found = signals(gdpr="1", gdpr_consent=OTHER_VENDOR)
    result = await matcher.redirect(redirect(f"google_gid={GID}&google_cver=1"), UID, found)
    assert result.outcome == "recorded"


async def test_gdpr_default_refuses_a_silent_redirect(make_matcher: MakeMatcher) -> None:
    eu = policy(gdpr_default=True)
    matcher = make_matcher(policy=eu)
    result = await matcher.redirect(redirect(f"google_gid={GID}&google_cver=1"), UID)
    assert result.outcome == "refused_no_consent_string"
    assert eu.counts[Operation.STORE_ID, Reason.NO_CONSENT_STRING] == 1


async def test_refused_push_goes_back_without_hosted_data_and_records_nothing(
    make_matcher: MakeMatcher, uids: Uids
) -> None:
    matcher = make_matcher(hosted=True, policy=policy(), push_user_lists=(12345,))
    query = f"google_gid={GID}&google_cver=1&google_push=tok"
    for uid in (UID, None):  # nor added to the buyer's lists
        result = await matcher.push(redirect(query), uid, signals(gdpr="1"))
        assert result.location == f"{EXCHANGE_URL}?google_nid={NID}&google_push=tok"
        assert result.match.browser is None
    assert uids.issued == [] and await matcher.table.by_gid(GID) is None
    assert matcher.stats.get("push", "redirect_refused_no_consent_string") == 2


async def test_refused_match_tag_serves_no_tag_and_creates_no_uid(
    make_matcher: MakeMatcher, uids: Uids
) -> None:
    matcher = make_matcher(policy=policy())
    result = await matcher.match_tag(None, signals(gdpr="1"))
    assert result.url is None and result.browser is None
    assert result.decision.reason is TagReason.PRIVACY and uids.issued == []
    assert matcher.stats.get("matchtag", "privacy") == 1


async def test_match_tag_carries_the_privacy_parameters_on(make_matcher: MakeMatcher) -> None:
    matcher = make_matcher(policy=policy())
    privacy = PrivacySignals(gdpr="1", gdpr_consent=STORE_ONLY)
    result = await matcher.match_tag(UID, decode_signals(privacy), privacy.params())
    assert result.url is not None
    assert dict(parse_qsl(urlsplit(result.url).query, keep_blank_values=True)) == {
        "google_nid": NID,
        "google_cm": "",
        "gdpr": "1",
        "gdpr_consent": STORE_ONLY,
    }


# -- PERSONALISE at bid time -----------------------------------------------------------------


async def matched(bidder: Bidder) -> None:
    """``GID`` matched to ``UID`` a moment ago (fresh)."""
    await bidder.table.record(GID, UID, 1)


async def test_without_signals_the_bidder_looks_up_as_today(make_bidder: MakeBidder) -> None:
    bidder = make_bidder(policy=policy())
    await matched(bidder)
    result = await bidder.bid(bid_request({"id": GID}))
    assert result.response is not None
    bid = result.response.seatbid[0].bid[0]
    assert bid.cid == "retarget" and bid.ext == {"matched": True, "match_tag": False}
    assert bidder.bid_log.recent()[-1].privacy_reason == "not_regulated"


async def test_consent_for_the_buyer_looks_up_and_the_tag_carries_the_signals(
    make_bidder: MakeBidder,
) -> None:
    eu = policy()
    bidder = make_bidder(policy=eu)
    await matched(bidder)
    consented = {"gdpr": 1}
    known = await bidder.bid(bid_request({"id": GID, "consent": FULL}, consented))
    assert known.response is not None and known.response.seatbid[0].bid[0].cid == "retarget"
    unknown = await bidder.bid(bid_request({"id": OTHER_GID, "consent": FULL}, consented))
    assert unknown.response is not None
    adm = unknown.response.seatbid[0].bid[0].adm or ""
    assert f"google_nid={NID}&amp;google_cm&amp;gdpr=1&amp;gdpr_consent={FULL}" in adm
    assert eu.counts[Operation.PERSONALISE, Reason.CONSENTED] == 2
    assert [r.privacy_reason for r in bidder.bid_log.recent()] == ["consented"] * 2


async def test_personalisation_without_purpose_1_places_no_match_tag(
    make_bidder: MakeBidder,
) -> None:
    eu = policy()
    bidder = make_bidder(policy=eu)
    await matched(bidder)
    no_storage = core(
        purpose_consents=id_bits(range(2, 11), 24), vendor_consents=vendor_bitfield(10, [HOST])
    )
    known = await bidder.bid(bid_request({"id": GID, "consent": no_storage}, {"gdpr": 1}))
    assert known.response is not None and known.response.seatbid[0].bid[0].cid == "retarget"
    unknown = await bidder.bid(bid_request({"id": OTHER_GID, "consent": no_storage}, {"gdpr": 1}))
    assert unknown.response is not None
    bid = unknown.response.seatbid[0].bid[0]
    assert bid.adm == PROSPECT.adm  # a match tag would share an ID: purpose 1 is needed
    assert bid.ext == {"matched": False, "match_tag": False}
    assert eu.counts[Operation.SYNC, Reason.PURPOSE] == 1


REFUSED_PERSONALISE = [
    ({"consent": STORE_ONLY}, {"gdpr": 1}, "purpose_not_allowed"),
    ({"consent": OTHER_VENDOR}, {"gdpr": 1}, "vendor_not_allowed"),
    ({}, {"gdpr": 1}, "no_consent_string"),
    ({"consent": "AAAA"}, {"gdpr": 1}, "undecodable"),
    ({}, {"us_privacy": "1YYN"}, "us_opt_out"),
    ({}, {"us_privacy": "1Y-N"}, "undecodable"),
    ({}, {"gpp": US_SALE_OPT_OUT, "gpp_sid": [7]}, "us_opt_out"),
    ({}, {"gpp": US_SALE_OPT_OUT}, "us_opt_out"),  # no gpp_sid: every US section read
]


@pytest.mark.parametrize(("user", "regs", "reason"), REFUSED_PERSONALISE)
async def test_refused_personalisation_bids_as_for_an_unknown_user(
    make_bidder: MakeBidder, user: dict[str, object], regs: dict[str, object], reason: str
) -> None:
    eu = policy()
    bidder = make_bidder(policy=eu)
    await matched(bidder)
    result = await bidder.bid(bid_request({"id": GID, **user}, regs))
    assert result.response is not None and result.outcome == "bid"
    bid = result.response.seatbid[0].bid[0]
    assert bid.cid == "prospect" and bid.adm == PROSPECT.adm  # no match tag
    assert bid.ext == {"matched": False, "match_tag": False, "privacy": reason}
    record = bidder.bid_log.recent()[-1]
    assert record.privacy_reason == reason and not record.matched
    assert record.match_tag_reason == "privacy"
    assert eu.counts[Operation.PERSONALISE, Reason(reason)] == 1
    assert bidder.stats.get("matchtag", "privacy") == 1


async def test_refused_personalisation_is_no_bid_where_a_campaign_needs_a_match(
    make_bidder: MakeBidder,
) -> None:
    bidder = make_bidder((RETARGET,), policy=policy())
    await matched(bidder)
    result = await bidder.bid(bid_request({"id": GID}, {"gdpr": 1}))
    assert result.response is None and result.outcome == "not_personalised"
    assert bidder.stats.get("bid", "not_personalised") == 1


async def test_without_a_host_vendor_id_gdpr_traffic_is_never_personalised(
    make_bidder: MakeBidder,
) -> None:
    bidder = make_bidder(policy=policy(host=None))
    await matched(bidder)
    result = await bidder.bid(bid_request({"id": GID, "consent": FULL}, {"gdpr": 1}))
    assert result.response is not None
    assert result.response.seatbid[0].bid[0].ext == {
        "matched": False,
        "match_tag": False,
        "privacy": "party_without_vendor_id",
    }
    # outside GDPR the vendor ID is not needed
    us = await bidder.bid(bid_request({"id": GID}, {"gdpr": 0, "us_privacy": "1YNN"}))
    assert us.response is not None and us.response.seatbid[0].bid[0].cid == "retarget"


async def test_hosted_data_is_not_read_when_personalisation_is_refused(
    make_bidder: MakeBidder,
) -> None:
    bidder = make_bidder(hosted=True, policy=policy())
    buyeruid = "AAECAwQFBgcICQoLDA0ODw"
    allowed = await bidder.bid(bid_request({"buyeruid": buyeruid}))
    assert allowed.response is not None and allowed.response.seatbid[0].bid[0].cid == "retarget"
    refused = await bidder.bid(bid_request({"buyeruid": buyeruid}, {"us_privacy": "1YYN"}))
    assert refused.response is not None and refused.response.seatbid[0].bid[0].cid == "prospect"


async def test_one_decision_per_bid_request(make_bidder: MakeBidder) -> None:
    """One ``personalise`` per request, and a ``sync`` only where a match tag would go."""
    eu = policy()
    bidder = make_bidder(policy=eu)
    await matched(bidder)
    for _ in range(3):
        await bidder.bid(bid_request({"id": GID, "consent": FULL}, {"gdpr": 1}))  # matched
        await bidder.bid(bid_request({"id": OTHER_GID}))  # unknown: a match tag
    assert eu.counts == {
        (Operation.PERSONALISE, Reason.CONSENTED): 3,
        (Operation.PERSONALISE, Reason.NOT_REGULATED): 3,
        (Operation.SYNC, Reason.NOT_REGULATED): 3,
    }
