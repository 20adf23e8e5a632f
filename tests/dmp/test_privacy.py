"""Privacy signals of a sync request: validated, canonical, table-driven."""

from __future__ import annotations

import pytest

from cookiematch.errors import QueryError
from cookiematch.protocol.privacy import NO_SIGNALS, PrivacySignals, parse_privacy
from cookiematch.protocol.query import parse_query

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
