"""The match-tag decision (frequency capping) and the URLs toward the exchange."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from cookiematch.buyer.matchtable import MatchEntry
from cookiematch.buyer.matchtag import ExchangeEndpoint, TagReason, decide_match_tag
from cookiematch.clock import SECONDS_PER_DAY as DAY

UID = bytes(range(16))
STALE = 14 * DAY


def entry(updated_at: float) -> MatchEntry:
    return MatchEntry("ABCD", UID, 1, int(updated_at))


@pytest.mark.parametrize(
    ("age", "reason"),
    [(0, TagReason.FRESH), (STALE - 1, TagReason.FRESH), (STALE, TagReason.STALE),
     (100 * DAY, TagReason.STALE)],
)  # fmt: skip
def test_entry_age_decides(age: float, reason: TagReason) -> None:
    decision = decide_match_tag(entry(1_000_000), 1_000_000 + age, STALE)
    assert decision.reason is reason
    assert decision.serve is (reason is TagReason.STALE)
    assert decision.age_seconds == age


def test_no_entry_serves_the_tag_unless_hosted_data_came_with_the_bid() -> None:
    assert decide_match_tag(None, 0, STALE).serve
    hosted = decide_match_tag(None, 0, STALE, hosted=True)
    assert hosted.reason is TagReason.HOSTED and not hosted.serve
    # an own entry decides even when hosted data is present
    assert decide_match_tag(entry(0), STALE, STALE, hosted=True).serve


def test_staleness_is_configurable() -> None:
    assert decide_match_tag(entry(0), DAY, DAY).serve
    assert not decide_match_tag(entry(0), DAY, 2 * DAY).serve


def test_match_tag_url_like_the_document() -> None:
    endpoint = ExchangeEndpoint("http://cm.g.doubleclick.net/pixel", "1234")
    assert endpoint.match_tag_url() == "http://cm.g.doubleclick.net/pixel?google_nid=1234&google_cm"


def test_hosted_tag_carries_the_uid() -> None:
    url = ExchangeEndpoint("https://x.example/pixel", "cookie-monster").match_tag_url(UID)
    assert url == (
        "https://x.example/pixel?google_nid=cookie-monster&google_cm"
        "&google_hm=AAECAwQFBgcICQoLDA0ODw"
    )


@pytest.mark.parametrize(
    "base", ["https://x.example/pixel?a=1", "https://x.example/pixel?", "https://x.example/p?a=1&"]
)
def test_configured_query_is_kept(base: str) -> None:
    url = ExchangeEndpoint(base, "n").match_tag_url()
    assert url.startswith(base) and url.endswith("google_nid=n&google_cm")
    assert "&&" not in url and "?&" not in url


def test_push_return_url_re_encodes_the_push_value() -> None:
    endpoint = ExchangeEndpoint("https://x.example/pixel", "n")
    url = endpoint.push_return_url("a b&c=\r\nX", UID)
    assert "\r" not in url and "\n" not in url and " " not in url
    params = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    assert params == [("google_nid", "n"), ("google_push", "a b&c=\r\nX"),
                      ("google_hm", "AAECAwQFBgcICQoLDA0ODw")]  # fmt: skip
