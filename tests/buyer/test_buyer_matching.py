"""The match redirect, pixel matching and the match tag, over a real SQLite store."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from cookiematch.buyer.matching import RedirectParams
from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.protocol.query import parse_query

from .conftest import EXCHANGE_URL, GID, NID, NOW, Clock, MakeMatcher, Uids

UID = bytes(range(16))


def params(query: str) -> RedirectParams:
    return RedirectParams.parse(parse_query(query))


def test_redirect_params_first_occurrence_wins_and_flags_are_empty() -> None:
    parsed = params("id=&google_gid=A1&google_gid=B2&google_cver=1&google_push&p1=v1")
    assert parsed == RedirectParams(gid="A1", cver="1", push="")


async def test_redirect_records_both_ways_for_a_known_cookie(make_matcher: MakeMatcher) -> None:
    matcher = make_matcher()
    result = await matcher.redirect(params(f"id=&google_gid={GID}&google_cver=1&p1=v1"), UID)
    assert result.outcome == "recorded"
    assert result.browser is not None and not result.browser.new
    assert (await matcher.table.by_gid(GID)).uid == UID  # type: ignore[union-attr]
    assert (await matcher.table.by_uid(UID)).gid == GID  # type: ignore[union-attr]
    assert matcher.stats.get("match", "recorded") == 1


async def test_redirect_without_cookie_creates_a_uid(make_matcher: MakeMatcher, uids: Uids) -> None:
    matcher = make_matcher()
    result = await matcher.redirect(params(f"google_gid={GID}&google_cver=1"), None)
    assert result.browser is not None and result.browser.new
    assert result.browser.uid == uids.issued[0]
    assert (await matcher.table.by_gid(GID)).uid == uids.issued[0]  # type: ignore[union-attr]
    assert matcher.stats.get("uid_created", "match") == 1


@pytest.mark.parametrize(
    ("query", "outcome"),
    [
        ("id=&google_error=3", "error_3"),
        ("id=&google_error=1", "error_1"),
        (f"google_error=2&google_gid={GID}&google_cver=1", "error_2"),
        ("google_error=99999", "error_other"),
        ("id=", "no_gid"),
        ("google_gid=a+b/&google_cver=1", "malformed_gid"),
        (f"google_gid={'A' * 65}&google_cver=1", "malformed_gid"),
        (f"google_gid={GID}", "malformed_cver"),
        (f"google_gid={GID}&google_cver=x", "malformed_cver"),
    ],
)
async def test_errors_and_bad_input_write_nothing(
    make_matcher: MakeMatcher, query: str, outcome: str
) -> None:
    matcher = make_matcher()
    result = await matcher.redirect(params(query), None)
    assert result.outcome == outcome and result.browser is None
    assert await matcher.table.by_gid(GID) is None
    assert matcher.stats.get("match", outcome) == 1


async def test_hosted_match_status_in_the_redirect_is_counted(make_matcher: MakeMatcher) -> None:
    matcher = make_matcher(hosted=True)
    await matcher.redirect(params(f"google_gid={GID}&google_cver=1&google_hm=2"), UID)
    assert matcher.stats.get("hosted_match_status", "2") == 1


async def test_push_records_and_redirects_back_with_the_same_value(
    make_matcher: MakeMatcher,
) -> None:
    matcher = make_matcher()
    result = await matcher.push(params(f"google_gid={GID}&google_cver=1&google_push=T0k-_"), UID)
    assert result.location == f"{EXCHANGE_URL}?google_nid={NID}&google_push=T0k-_"
    assert result.match.outcome == "recorded"
    assert (await matcher.table.by_gid(GID)).uid == UID  # type: ignore[union-attr]


async def test_hosted_push_adds_google_hm_and_sets_a_new_cookie(
    make_matcher: MakeMatcher, uids: Uids
) -> None:
    matcher = make_matcher(hosted=True)
    result = await matcher.push(params(f"google_gid={GID}&google_cver=1&google_push=abc"), None)
    assert result.location is not None and result.match.browser is not None
    assert result.match.browser.new
    query = dict(parse_qsl(urlsplit(result.location).query))
    assert query == {"google_nid": NID, "google_push": "abc",
                     "google_hm": "AAAAAAAAAAAAAAAAAAAAAA"}  # fmt: skip


async def test_push_adds_the_configured_user_lists_on_the_way_back(
    make_matcher: MakeMatcher,
) -> None:
    matcher = make_matcher(hosted=True, push_user_lists=(12345, 45678))
    result = await matcher.push(params(f"google_gid={GID}&google_cver=1&google_push=abc"), UID)
    assert result.location is not None
    assert parse_qsl(urlsplit(result.location).query) == [
        ("google_nid", NID), ("google_push", "abc"), ("google_hm", "AAECAwQFBgcICQoLDA0ODw"),
        ("google_ula", "12345"), ("google_ula", "45678"),
    ]  # fmt: skip


async def test_push_with_bad_gid_still_goes_back_but_records_nothing(
    make_matcher: MakeMatcher,
) -> None:
    matcher = make_matcher()
    result = await matcher.push(params("google_gid=!!&google_cver=1&google_push=abc"), UID)
    assert result.location is not None and result.match.outcome == "malformed_gid"
    assert matcher.stats.get("push", "redirect_malformed_gid") == 1


@pytest.mark.parametrize("query", [f"google_gid={GID}&google_cver=1", "google_push", "x=1"])
async def test_push_without_push_value_is_a_plain_pixel(
    make_matcher: MakeMatcher, query: str
) -> None:
    matcher = make_matcher()
    result = await matcher.push(params(query), UID)
    assert result.location is None
    assert await matcher.table.by_gid(GID) is None
    assert matcher.stats.get("push", "missing_push") == 1


async def test_match_tag_fresh_vs_stale(make_matcher: MakeMatcher, clock: Clock) -> None:
    matcher = make_matcher()
    first = await matcher.match_tag(UID)
    assert first.url == f"{EXCHANGE_URL}?google_nid={NID}&google_cm"
    assert first.decision.reason.value == "no_entry"
    await matcher.redirect(params(f"google_gid={GID}&google_cver=1"), UID)
    clock.advance(13 * DAY)
    fresh = await matcher.match_tag(UID)
    assert fresh.url is None and fresh.decision.reason.value == "fresh"
    clock.advance(DAY)
    stale = await matcher.match_tag(UID)
    assert stale.url is not None and stale.decision.reason.value == "stale"
    assert stale.decision.age_seconds == 14 * DAY


async def test_match_tag_for_a_new_browser_creates_its_uid_and_hosted_tag(
    make_matcher: MakeMatcher, uids: Uids
) -> None:
    matcher = make_matcher(hosted=True)
    result = await matcher.match_tag(None)
    assert result.browser.new and result.browser.uid == uids.issued[0]
    assert result.url is not None and result.url.endswith("&google_hm=AAAAAAAAAAAAAAAAAAAAAA")
    assert NOW  # the clock is injected
