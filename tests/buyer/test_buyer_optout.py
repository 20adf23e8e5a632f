"""The buyer's opt-out in its domain: access and erasure of one user (``BuyerSubjects``), a
browser opted out at the buyer on /match, /push and /matchtag, and the exchange's notices
(``ExchangeOptOuts``), on a real SQLite store in both layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from cookiematch.buyer.ids import format_uid
from cookiematch.buyer.matching import RedirectParams
from cookiematch.buyer.matchtable import MatchTable
from cookiematch.buyer.matchtag import TagReason
from cookiematch.buyer.optout import ExchangeOptOuts, NoticeOutcome
from cookiematch.buyer.stats import BuyerStats
from cookiematch.buyer.subjects import BuyerSubjects
from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.errors import InvalidSubject
from cookiematch.protocol.optout_notice import OptOutNotice, encode_notice, sign
from cookiematch.protocol.query import parse_query
from cookiematch.storage import Store, open_store

from .conftest import EXCHANGE_URL, GID, NID, Clock, MakeMatcher, Uids
from .stored import stored_about

UID = bytes(range(16))
OTHER_UID = bytes(range(1, 17))
OTHER_GID = "b3RoZXItZ2lk"
ROTATED_GID = "CAESEHQzSkjqVcFNjkyYcfsEXwM"
SECRET = b"exchange-optout-secret-0123456789"


def redirect(query: str) -> RedirectParams:
    return RedirectParams.parse(parse_query(query))


def subjects(table: MatchTable, clock: Clock) -> BuyerSubjects:
    async def opened() -> MatchTable:
        return table

    return BuyerSubjects(opened, clock=clock)


# -- access and erasure of one user -------------------------------------------------------------


async def test_access_lists_the_match_in_both_directions(table: MatchTable, clock: Clock) -> None:
    data = subjects(table, clock)
    subject = format_uid(UID)
    assert (await data.access(subject)).records == []
    entry = await table.record(GID, UID, 3)
    report = await data.access(subject)
    assert report.role == "buyer" and report.subject == subject
    assert [r.kind for r in report.records] == ["match_by_uid", "match_by_gid"]
    for record in report.records:
        assert record.value == {
            "gid": GID,
            "buyer_uid": subject,
            "cver": 3,
            "matched_at": entry.updated_at,
            "used_until": entry.updated_at + 28 * DAY,
            "lapsed": False,
        }
        if table.buckets is None:
            assert record.field is None and record.expires_in_seconds == pytest.approx(28 * DAY)
        else:  # a bucket's field: no store TTL
            assert record.field is not None and record.expires_in_seconds is None
    clock.advance(29 * DAY)
    lapsed = (await data.access(subject)).records
    if table.buckets is None:  # gone with the store's TTL
        assert lapsed == []
    else:  # still stored, no longer used
        assert len(lapsed) == 2
        assert all(isinstance(r.value, dict) and r.value["lapsed"] for r in lapsed)


async def test_erase_removes_every_entry_about_the_user(
    table: MatchTable, store: Store, clock: Clock
) -> None:
    data = subjects(table, clock)
    await table.record(GID, UID, 1)
    await table.record(OTHER_GID, OTHER_UID, 1)
    report = await data.erase(format_uid(UID))
    assert report.erased == {"match_by_gid": 1, "match_by_uid": 1} and report.notified == []
    assert await stored_about(store, NID, uids=[UID], gids=[GID]) == []
    assert (await data.access(format_uid(OTHER_UID))).records != []
    again = await data.erase(format_uid(UID))
    assert again.erased == {"match_by_gid": 0, "match_by_uid": 0}


@pytest.mark.parametrize("subject", ["", "nope", "AAECAwQFBgcICQoLDA0OD", "OPT_OUT", GID])
async def test_a_subject_not_in_the_cookies_format_is_refused(
    table: MatchTable, clock: Clock, subject: str
) -> None:
    data = subjects(table, clock)
    with pytest.raises(InvalidSubject):
        await data.access(subject)
    with pytest.raises(InvalidSubject):
        await data.erase(subject)


# -- a browser opted out at the buyer ---------------------------------------------------------


async def test_an_opted_out_browser_is_never_matched(
    make_matcher: MakeMatcher, store: Store, uids: Uids
) -> None:
    matcher = make_matcher(hosted=True)
    result = await matcher.redirect(
        redirect(f"google_gid={GID}&google_cver=1"), None, opted_out=True
    )
    assert result.outcome == "opted_out" and result.browser is None and not result.may_store
    pushed = await matcher.push(
        redirect(f"google_gid={GID}&google_cver=1&google_push=tok"), None, opted_out=True
    )
    assert pushed.location == f"{EXCHANGE_URL}?google_nid={NID}&google_push=tok"
    assert pushed.match.browser is None
    tag = await matcher.match_tag(None, opted_out=True)
    assert tag.url is None and tag.browser is None
    assert tag.decision.reason is TagReason.OPTED_OUT
    assert uids.issued == [] and await stored_about(store, NID, gids=[GID]) == []
    assert matcher.stats.get("match", "opted_out") == 1
    assert matcher.stats.get("push", "redirect_opted_out") == 1
    assert matcher.stats.get("matchtag", "opted_out") == 1


async def test_google_error_1_still_erases_the_gid_of_an_opted_out_browser(
    make_matcher: MakeMatcher, store: Store
) -> None:
    matcher = make_matcher()
    await matcher.redirect(redirect(f"google_gid={GID}&google_cver=1"), UID)
    result = await matcher.redirect(
        redirect(f"google_error=1&google_gid={GID}"), None, opted_out=True
    )
    assert result.browser is None
    assert await stored_about(store, NID, uids=[UID], gids=[GID]) == []


# -- the exchange's notices ---------------------------------------------------------------------


def notice(*gids: str, nid: str = NID) -> bytes:
    return encode_notice(OptOutNotice(id="n-1", nid=nid, google_gids=list(gids), time=0))


def receiver(table: MatchTable, clock: Clock, stats: BuyerStats | None = None) -> ExchangeOptOuts:
    return ExchangeOptOuts(table, NID, SECRET, stats or BuyerStats(), clock=clock)


async def test_a_signed_notice_erases_every_gid_and_its_uid(
    table: MatchTable, store: Store, clock: Clock
) -> None:
    await table.record(GID, UID, 1)
    await table.record(OTHER_GID, OTHER_UID, 1)
    stats = BuyerStats()
    notices = receiver(table, clock, stats)
    body = notice(ROTATED_GID, GID)  # under every key version, current first
    signature = sign(SECRET, body, int(clock()))
    assert await notices.receive(body, signature) is NoticeOutcome.ERASED
    assert await stored_about(store, NID, uids=[UID], gids=[GID, ROTATED_GID]) == []
    assert await table.by_gid(OTHER_GID) is not None
    assert await notices.receive(body, signature) is NoticeOutcome.NOTHING_KNOWN  # a retry
    assert stats.snapshot()["exchange_optout"] == {"erased": 1, "nothing_known": 1}


async def test_notices_that_do_not_check_out_erase_nothing(
    table: MatchTable, store: Store, clock: Clock
) -> None:
    await table.record(GID, UID, 1)
    stats = BuyerStats()
    notices = receiver(table, clock, stats)
    now = int(clock())
    body = notice(GID)
    cases = [
        (body, None, NoticeOutcome.BAD_SIGNATURE),
        (body, "", NoticeOutcome.BAD_SIGNATURE),
        (body, sign(b"another-secret-0123456789", body, now), NoticeOutcome.BAD_SIGNATURE),
        (body, sign(SECRET, body, now - 301), NoticeOutcome.BAD_SIGNATURE),  # stale
        (body, sign(SECRET, body, now + 301), NoticeOutcome.BAD_SIGNATURE),
        (body, sign(SECRET, body + b" ", now), NoticeOutcome.BAD_SIGNATURE),  # another body
        (b"garbage", sign(SECRET, b"garbage", now), NoticeOutcome.BAD_BODY),
        (notice(), sign(SECRET, notice(), now), NoticeOutcome.BAD_BODY),
        (notice("!!"), sign(SECRET, notice("!!"), now), NoticeOutcome.BAD_BODY),
        (
            notice(GID, nid="other"),
            sign(SECRET, notice(GID, nid="other"), now),
            NoticeOutcome.WRONG_NID,
        ),
    ]
    for sent, signature, outcome in cases:
        assert await notices.receive(sent, signature) is outcome
    assert len(await stored_about(store, NID, uids=[UID], gids=[GID])) == 2
    assert stats.snapshot()["exchange_optout"] == {
        "bad_signature": 6,
        "bad_body": 3,
        "wrong_nid": 1,
    }


async def test_a_failed_store_is_reported_for_a_retry(tmp_path: Path, clock: Clock) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'closed.db'}", clock=clock)
    await store.close()
    table = MatchTable(store, NID, ttl_seconds=28 * DAY, clock=clock)
    body = notice(GID)
    outcome = await receiver(table, clock).receive(body, sign(SECRET, body, int(clock())))
    assert outcome is NoticeOutcome.STORE_ERROR
