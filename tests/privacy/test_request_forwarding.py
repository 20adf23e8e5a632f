"""What a role passes on carries the signals it read: malformed and repeated parameters are
forwarded as received, so the next role reads them as undecodable too, never as absent."""

from __future__ import annotations

import pytest

from cookiematch.privacy.openrtb import bid_regs, bid_signals
from cookiematch.privacy.policy import Operation, PrivacyPolicy, PrivacySettings, Reason
from cookiematch.privacy.request import NO_PRIVACY, read_privacy
from cookiematch.protocol.openrtb import (
    BidRequest,
    User,
    decode_bid_request,
    encode_bid_request,
)
from cookiematch.protocol.query import QueryParam, parse_query


@pytest.mark.parametrize(
    ("query", "regs_us_privacy", "consent"),
    [
        ("us_privacy=2YYN", "2YYN", None),  # malformed: forwarded, not dropped
        ("us_privacy=1NNN&us_privacy=1YYN", "1NNN,1YYN", None),  # repeated: still malformed
        ("us_privacy=1ynn", "1YNN", None),  # well formed: as the grammar normalises it
        ("gdpr=1&gdpr_consent=not!a!tc", None, "not!a!tc"),
    ],
)
def test_the_bid_request_carries_what_the_exchange_read(
    query: str, regs_us_privacy: str | None, consent: str | None
) -> None:
    privacy = read_privacy(parse_query(query), None)
    regs, user_consent = bid_regs(privacy)
    assert (regs.us_privacy if regs else None, user_consent) == (regs_us_privacy, consent)
    policy = PrivacyPolicy(PrivacySettings(host_vendor_id=7))
    exchange_view = policy.decide(Operation.PERSONALISE, privacy.signals, 7)
    request = BidRequest(id="r", regs=regs, user=User(consent=user_consent))
    wire = decode_bid_request(encode_bid_request(request))  # what the buyer receives
    buyer_view = policy.decide(Operation.PERSONALISE, bid_signals(wire), 7)
    assert buyer_view.allowed == exchange_view.allowed
    if not exchange_view.allowed:
        assert buyer_view.reason in (Reason.UNDECODABLE, exchange_view.reason)


def test_a_tag_carries_the_parameters_as_received() -> None:
    query = parse_query("p=1&us_privacy=2YYN&gdpr=2&gdpr_consent=CQ&gpp_sid=7")
    received = read_privacy(query, None).received
    assert received == (
        QueryParam("us_privacy", "2YYN"),
        QueryParam("gdpr", "2"),
        QueryParam("gdpr_consent", "CQ"),
        QueryParam("gpp_sid", "7"),
    )
    assert read_privacy(parse_query("p=1"), None) is NO_PRIVACY and NO_PRIVACY.received == ()
