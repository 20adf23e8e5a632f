"""Parsing of the identifiers the buyer receives."""

from __future__ import annotations

import base64

import pytest

from cookiematch.buyer.ids import format_uid, parse_cver, parse_gid, parse_hosted_uid, parse_uid

UID = bytes(range(16))


@pytest.mark.parametrize(
    "text", ["dGhpcyBpcyBhbiBleGFtGxl", "ABCDETC", "a", "Zm9v", "_-_-", "A" * 64]
)
def test_plausible_gids_are_kept_verbatim(text: str) -> None:
    expected = None if len(text) % 4 == 1 else text
    assert parse_gid(text) == expected


@pytest.mark.parametrize(
    "text", [None, "", "a+b/", "abc=", "A" * 65, "abcde", "ab cd", "é", "dGhp\ncyBp"]
)
def test_malformed_or_too_long_gids_are_refused(text: str | None) -> None:
    assert parse_gid(text) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1), ("0", 0), ("4294967295", 2**32 - 1), ("4294967296", None), ("", None),
     ("-1", None), ("1.0", None), (None, None), ("٣", None)],
)  # fmt: skip
def test_cver(text: str | None, value: int | None) -> None:
    assert parse_cver(text) == value


def test_uid_spelling_round_trips() -> None:
    text = format_uid(UID)
    assert len(text) == 22 and parse_uid(text) == UID
    assert parse_uid(text[:-1] + "B") is None  # non-canonical last character


def test_hosted_uid_from_buyeruid_padded_or_not() -> None:
    padded = base64.urlsafe_b64encode(UID).decode()
    assert parse_hosted_uid(padded) == UID
    assert parse_hosted_uid(padded.rstrip("=")) == UID
    # the document's hosted example is 16 bytes too: any 16 bytes are a uid
    assert parse_hosted_uid("Q29va2llIG51bWJlciAxIQ==") == b"Cookie number 1!"


@pytest.mark.parametrize(
    "text",
    [None, "", "545678765467876567898765678987654", "Q29va2llIG51bWJlciAxISE", "a+b/" * 6],
)
def test_anything_else_in_buyeruid_is_no_hosted_data(text: str | None) -> None:
    assert parse_hosted_uid(text) is None
