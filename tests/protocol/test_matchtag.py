from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch import errors
from cookiematch.errors import MatchTagError
from cookiematch.protocol.matchtag import (
    MAX_EXTRAS_BYTES,
    MAX_USER_LIST_ADDS,
    UserListAdd,
    parse_match_tag,
    parse_user_list_add,
)
from cookiematch.protocol.privacy import PRIVACY_PARAMS
from cookiematch.protocol.query import QueryParam, encode_query, parse_query

from .goldens import cases
from .test_golden_redirects import check_tag, parse_tag


@pytest.mark.parametrize("case", cases("matchtags.json"))
def test_golden(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(getattr(errors, case["error"])):
            parse_tag(case["url"])
        return
    _, tag = parse_tag(case["url"])
    check_tag(tag, case["expected"])


def q(raw: str) -> tuple[QueryParam, ...]:
    return parse_query(raw)


def test_params_keeps_everything_for_the_self_redirect() -> None:
    params = q("google_nid=n&google_cm&google_foo=1&x=2&google_tc=1")
    assert parse_match_tag(params).params == params


def extras_of_size(size: int) -> str:
    """Extras whose re-encoded form is exactly ``size`` bytes."""
    return "x=" + "v" * (size - 2)


@pytest.mark.parametrize(
    ("size", "dropped"), [(MAX_EXTRAS_BYTES, False), (MAX_EXTRAS_BYTES + 1, True)]
)
def test_extras_size_limit(size: int, dropped: bool) -> None:
    tag = parse_match_tag(q(f"google_nid=n&google_cm&{extras_of_size(size)}"))
    assert tag.extras_dropped is dropped
    assert (tag.extras == ()) is dropped


def test_extras_size_counts_the_reencoded_form_and_separators() -> None:
    # 'é' re-encodes to 6 bytes: "a=" + 170 * 6 = 1022 fits, "a=" + 171 * 6 = 1028 does not,
    # although the decoded value is only 171 characters
    assert not parse_match_tag(q("google_nid=n&a=" + "%C3%A9" * 170)).extras_dropped
    assert parse_match_tag(q("google_nid=n&a=" + "%C3%A9" * 171)).extras_dropped
    many = "&".join(["a=b"] * 256)  # 256*3 + 255 = 1023
    assert not parse_match_tag(q("google_nid=n&" + many)).extras_dropped
    assert parse_match_tag(q("google_nid=n&" + many + "&c")).extras_dropped  # +2 = 1025
    all_or_nothing = parse_match_tag(q("google_nid=n&first=1&" + "y=" + "z" * 1100))
    assert all_or_nothing.extras == () and all_or_nothing.extras_dropped


def test_privacy_parameters_are_neither_counted_nor_dropped() -> None:
    consent = "C" * 1500  # a long TC string: over the extras' limit on its own
    tag = parse_match_tag(q(f"google_nid=n&google_cm&gdpr=1&gdpr_consent={consent}&x=1"))
    assert not tag.extras_dropped
    assert tag.extras == (
        QueryParam("gdpr", "1"),
        QueryParam("gdpr_consent", consent),
        QueryParam("x", "1"),
    )
    tag = parse_match_tag(
        q(f"google_nid=n&gdpr=1&{extras_of_size(MAX_EXTRAS_BYTES + 1)}&gpp_sid=2")
    )
    assert tag.extras_dropped
    assert tag.extras == (QueryParam("gdpr", "1"), QueryParam("gpp_sid", "2"))


def test_google_params_do_not_count_towards_extras() -> None:
    tag = parse_match_tag(q("google_nid=n&google_foo=" + "z" * 2000 + "&x=1"))
    assert tag.extras == (QueryParam("x", "1"),)
    assert not tag.extras_dropped


def test_user_list_adds_over_the_limit_are_malformed() -> None:
    raw = "&".join(f"google_ula={i},5" for i in range(1, MAX_USER_LIST_ADDS + 4))
    tag = parse_match_tag(q("google_nid=n&" + raw))
    assert len(tag.user_list_adds) == MAX_USER_LIST_ADDS + 3
    assert all(add.list_id is not None for add in tag.user_list_adds[:MAX_USER_LIST_ADDS])
    assert tag.user_list_adds[MAX_USER_LIST_ADDS:] == tuple(
        UserListAdd(str(i), None, None)
        for i in range(MAX_USER_LIST_ADDS + 1, MAX_USER_LIST_ADDS + 4)
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", UserListAdd("1", 1, None)),
        ("1,0", UserListAdd("1", 1, 0)),
        (None, UserListAdd("", None, None)),
        (" 1", UserListAdd(" 1", None, None)),
        ("1,-1", UserListAdd("1", None, None)),
        ("1,9999999999999999999", UserListAdd("1", 1, 9999999999999999999)),
        ("1,99999999999999999999", UserListAdd("1", None, None)),
        ("٣", UserListAdd("٣", None, None)),  # Arabic-Indic digit: not ASCII
    ],
)
def test_parse_user_list_add(value: str | None, expected: UserListAdd) -> None:
    assert parse_user_list_add(value) == expected


@pytest.mark.parametrize(
    ("raw", "has_operation"),
    [
        ("google_nid=n", False),
        ("google_nid=n&google_sc&google_no_sc&google_tc&x=1", False),
        ("google_nid=n&google_cm", True),
        ("google_nid=n&google_ula=abc", True),
        ("google_nid=n&google_hm=", True),
        ("google_nid=n&google_push=", True),
    ],
)
def test_has_operation(raw: str, has_operation: bool) -> None:
    assert parse_match_tag(q(raw)).has_operation is has_operation


names = st.sampled_from(
    [
        "google_nid",
        "google_cm",
        "google_ula",
        "google_hm",
        "google_push",
        "google_sc",
        "google_no_sc",
        "google_tc",
        "google_x",
        "x",
        "y",
    ]
)
values = st.none() | st.text(max_size=30)


@given(st.lists(st.builds(QueryParam, names, values), max_size=40))
def test_only_match_tag_error(ps: list[QueryParam]) -> None:
    try:
        tag = parse_match_tag(tuple(ps))
    except MatchTagError:
        return
    assert tag.nid
    assert all(not p.name.startswith("google_") for p in tag.extras)
    others = [p for p in tag.extras if p.name not in PRIVACY_PARAMS]
    assert len(encode_query(others)) <= MAX_EXTRAS_BYTES
