"""``read_common_tag`` and ``read_tag`` against the general parse (``parse_query`` then
``parse_match_tag``): same rejections, same nid, the same extras encoded as ``encode_param``
writes them, the same ``google_hm``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cookiematch.errors import MatchTagError, QueryError
from cookiematch.protocol.common_tag import read_common_tag, read_tag
from cookiematch.protocol.matchtag import MAX_EXTRAS_BYTES, parse_match_tag
from cookiematch.protocol.privacy import PRIVACY_PARAMS
from cookiematch.protocol.query import MAX_QUERY_BYTES, encode_param, parse_query

from .goldens import cases


def general(query: str, hosted: bool = False) -> tuple[str, list[str], str | None, bool] | None:
    """What the general path makes of ``query``: ``(nid, encoded extras, google_hm,
    google_cm)`` when it is the common case (a cookie match, no other operation; or if
    ``hosted`` one ``google_hm``, with or without the cookie match; no cookie test, no privacy
    parameter, no extra dropped), else None (an error included)."""
    try:
        tag = parse_match_tag(parse_query(query))
    except (QueryError, MatchTagError):
        return None
    other = (
        tag.user_list_adds
        or (tag.hosted_match is not None and not hosted)
        or tag.hosted_match_duplicated
        or tag.push is not None
        or tag.push_duplicated
        or tag.cookie_test
        or tag.extras_dropped
        or any(p.name in PRIVACY_PARAMS for p in tag.extras)
    )
    if not (tag.cookie_match or (hosted and tag.hosted_match is not None)) or other:
        return None
    return tag.nid, [encode_param(p) for p in tag.extras], tag.hosted_match, tag.cookie_match


def agree(query: str) -> None:
    """The flat reading is the general one, except that it leaves a non-ASCII query to it;
    with and without a hosted match."""
    expected, hosted = general(query), general(query, True)
    if not query.isascii():
        assert read_common_tag(query) is None
        assert read_tag(query, True) is None
    else:
        assert read_common_tag(query) == (None if expected is None else expected[:2])
        assert read_tag(query, True) == hosted


def golden_query(case: dict[str, Any]) -> str | None:
    if "raw_hex" in case:
        try:
            return bytes.fromhex(case["raw_hex"]).decode()
        except UnicodeDecodeError:
            return None
    raw: str = case["raw"]
    return raw


@pytest.mark.parametrize("case", cases("query.json"))
def test_golden_queries_after_a_cookie_match(case: dict[str, Any]) -> None:
    raw = golden_query(case)
    if raw is None:
        return  # bytes that are not UTF-8: granian's query string is a str
    for query in (f"google_nid=n&google_cm&{raw}", f"{raw}&google_nid=n&google_cm"):
        agree(query)
        if "error" in case:
            assert read_common_tag(query) is None


@pytest.mark.parametrize("case", cases("matchtags.json"))
def test_golden_match_tags(case: dict[str, Any]) -> None:
    _, _, query = case["url"].partition("?")
    agree(query)


def test_the_common_case() -> None:
    assert read_common_tag("google_nid=ad_network_xyz&google_cm&p1=v1&p2=v2") == (
        "ad_network_xyz",
        ["p1=v1", "p2=v2"],
    )
    assert read_common_tag("google_cm=&a=%C3%A9+b&flag&=x&&google_sc&google_nid=n") == (
        "n",
        ["a=%C3%A9%20b", "flag"],
    )


@pytest.mark.parametrize(
    "query",
    [
        "google_nid=n",  # no google_cm
        "google_cm",  # no nid
        "google_nid=&google_cm",
        "google_nid&google_cm",
        "google_nid=n&google_nid=n&google_cm",
        "google_nid=n&google_cm&google_ula=1",
        "google_nid=n&google_cm&google_hm=AAAA",
        "google_nid=n&google_cm&google_push=x",
        "google_nid=n&google_cm&google_tc=1",
        "google_nid=n&google_cm&gdpr=0",
        "google_nid=n&google_cm&us_privacy=1---",
        "google_nid=n&google_cm&a=%zz",
        "google_nid=n&google_cm&a=%FF",
        "google_nid=n&google_cm&a=%0A",
        "google_nid=n&google_cm&a=\t",
        "google_nid=n&google_cm&a=é",  # not ASCII: the general path reads it
        "google_nid=n&google_cm&a=" + "x" * MAX_QUERY_BYTES,
        "google_nid=n&google_cm&a=" + "x" * (MAX_EXTRAS_BYTES - 1),  # 1025 bytes of extras
    ],
)
def test_not_the_common_case(query: str) -> None:
    assert read_common_tag(query) is None


def test_the_hosted_match() -> None:
    query = "google_nid=n&google_cm&google_hm=Q29va2llIG51bWJlciAxIQ%3D%3D&p=1"
    assert read_tag(query, True) == ("n", ["p=1"], "Q29va2llIG51bWJlciAxIQ==", True)
    assert read_tag(query, False) is None
    assert read_tag("google_nid=n&google_cm&google_hm", True) == ("n", [], "", True)
    assert read_tag("google_nid=n&google_cm&p", True) == ("n", ["p"], None, True)
    assert read_tag("google_nid=n&google_cm&google_hm=QQ&google_hm=QQ", True) is None
    assert read_tag("google_nid=n&google_hm=QQ", True) == ("n", [], "QQ", False)
    assert read_tag("google_nid=n&p", True) is None  # no operation


def test_extras_of_exactly_the_limit() -> None:
    query = "google_nid=n&google_cm&a=" + "x" * (MAX_EXTRAS_BYTES - 2)
    assert read_common_tag(query) == ("n", ["a=" + "x" * (MAX_EXTRAS_BYTES - 2)])


# --- the general parse as the oracle over generated match tags ------------------------------

ODD = "&=%+;#?/ ,~._-\t\x7féあ😀"
NAMES = [
    "google_nid", "google_cm", "google_sc", "google_no_sc", "google_tc", "google_ula",
    "google_hm", "google_push", "google_x", "google_", "gdpr", "gpp_sid", "p", "",
]  # fmt: skip
names = st.one_of(
    st.sampled_from(NAMES),
    st.text(st.sampled_from("abcXYZ019" + ODD), max_size=6),
)
values = st.one_of(
    st.none(),
    st.sampled_from(["", "n", "ad_network_xyz", "%", "%4", "%41", "%C3%A9", "%FF", "%00", "+"]),
    st.text(st.sampled_from("abcXYZ019" + ODD), max_size=12),
    st.integers(0, 1100).map(lambda n: "v" * n),  # sizes around the 1 KiB of extras
)


def percent_encoded(text: str) -> str:
    return "".join(c if c.isalnum() and c.isascii() else f"%{ord(c):02X}" for c in text)


@st.composite
def match_tags(draw: st.DrawFn) -> str:
    pairs = [("google_nid", draw(st.sampled_from(["n", "ad_network_xyz", "x%2By"])))]
    if draw(st.booleans()):
        pairs.append(("google_cm", None))
    for _ in range(draw(st.integers(0, 6))):
        name, value = draw(names), draw(values)
        if draw(st.booleans()):
            name = percent_encoded(name)
        pairs.append((name, value))
    pairs = draw(st.permutations(pairs))
    return "&".join(name if value is None else f"{name}={value}" for name, value in pairs)


@settings(max_examples=3000, deadline=None)
@given(match_tags())
@example("google_nid=n&google_cm&p=" + "v" * 1019 + "&q")
@example("google_nid=n&google_cm&p=" + "v" * 1020 + "&q")
@example("google_nid=n&google_cm&%67oogle_ula=1")
@example("%67oogle_nid=n&google_cm&gdpr%5Fconsent=x")
@example("google_nid=n&google_cm&google_hm=%41%42&google_%68m")
def test_agrees_with_the_general_parse(query: str) -> None:
    agree(query)
