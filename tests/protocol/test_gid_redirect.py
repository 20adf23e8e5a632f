"""``GidRedirect`` (the prepared redirect of the match tag's common case) writes the bytes of
``RedirectTemplate.render``: the seed's redirect vectors, then generated templates, gids,
extras, sizes and hosted match statuses; and ``UserIdCipher.gid_function`` is ``encrypt``."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cookiematch.protocol.common_tag import read_common_tag
from cookiematch.protocol.gid_redirect import GidRedirect
from cookiematch.protocol.query import QueryParam, encode_param
from cookiematch.protocol.redirect import RedirectTemplate, ResponseParams
from cookiematch.protocol.userid import UserIdCipher

from .goldens import cases


def prepared(url: str, cver: int, *, extras_first: bool = True) -> GidRedirect:
    redirect = GidRedirect.prepare(RedirectTemplate.compile(url), cver, extras_first=extras_first)
    assert redirect is not None
    return redirect


def common_case(case: dict[str, Any]) -> tuple[str, list[str]] | None:
    """The scheme and encoded extras of a vector whose match tag is the common case and whose
    answer a gid, else None (the general path's vector)."""
    tag = case["match_tag"]
    common = read_common_tag(tag.partition("?")[2]) if tag else None
    if common is None or set(case["response"]) != {"gid", "cver"}:
        return None
    return tag.partition("://")[0], common[1]


@pytest.mark.parametrize("case", cases("redirects.json"))
def test_seed_redirects_of_the_common_case(case: dict[str, Any]) -> None:
    common = common_case(case)
    if common is None:
        return
    scheme, extras = common
    response = case["response"]
    first = case.get("exact_with_extras_first", True)
    location = prepared(case["redirect_url"], response["cver"], extras_first=first).location(
        scheme, response["gid"], extras
    )
    assert location == case["expected"]


def test_the_vectors_hold_common_cases() -> None:
    assert sum(common_case(case.values[0]) is not None for case in cases("redirects.json")) >= 4


def test_a_template_holding_a_marker_is_not_prepared() -> None:
    template = RedirectTemplate.compile("http://a.com/p?GidMarkQ7Zr2Kp9Wn4Vb8Tc1Yd6Hf=1")
    assert GidRedirect.prepare(template, 1, extras_first=True) is None


def test_another_scheme_is_not_rendered() -> None:
    assert prepared("http://a.com/p", 1).location("ftp", "g", []) is None


# --- generated: the prepared redirect against the general renderer -------------------------

TEMPLATES = [
    "http://a.com",
    "http://a.com/",
    "https://a.com/p?id=",
    "http://a.com/p?",
    "http://a.com/p?a=1&",
    "http://a.com/p?google_x=1&k=v",
    "http://a.com/%%GOOGLE_GID%%?u=%%GOOGLE_ULA%%&h=%%GOOGLE_HM%%%%GOOGLE_ULA_PAIR%%",
    "http://user.buyer.com/cookies?w=0%%GOOGLE_PUSH_PAIR%%&x=1%%GOOGLE_GID_PAIR&y=2"
    "%%GOOGLE_CVER_PAIR%%&z=3%%GOOGLE_ERROR_PAIR%%",
    "http://a.com/p?g=%%GOOGLE_GID%%&c=%%GOOGLE_CVER%%",
    "http://a.com/p?g=%%GOOGLE_GID%%&again=%%GOOGLE_GID%%",
    "http://a.com/p?c=%%GOOGLE_CVER%%",
    "http://a.com/p?gdpr=%%GDPR%%&tc=%%GDPR_CONSENT%%&gpp=%%GPP%%&sid=%%GPP_SID%%"
    "&usp=%%US_PRIVACY%%",
    "https://a.com/%%GOOGLE_GID%%",
    "http://a.com/p?x=%%GOOGLE_GID_PAIR%%%%GOOGLE_CVER_PAIR%%",
]
ODD = "abcXYZ019 &=%+;#?/,~._-\"'<>\\é😀"
extra_params = st.lists(
    st.builds(
        QueryParam,
        st.text(st.sampled_from(ODD), min_size=1, max_size=8).filter(
            lambda name: not name.startswith("google_")
        ),
        st.none() | st.text(st.sampled_from(ODD), max_size=20) | st.just("v" * 1000),
    ),
    max_size=5,
)
gids = st.text(st.sampled_from("ABCxyz0189-_"), min_size=27, max_size=27)


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(TEMPLATES),
    st.sampled_from(["http", "https"]),
    gids,
    st.integers(0, 255),
    extra_params,
    st.booleans(),
    st.sampled_from([None, None, 4]),
    st.booleans(),
)
def test_agrees_with_the_renderer(
    url: str,
    scheme: str,
    gid: str,
    cver: int,
    extras: list[QueryParam],
    first: bool,
    hosted_match: int | None,
    with_gid: bool,
) -> None:
    """Also with a hosted match's status (its write failed), and without a gid (a hosted
    match alone)."""
    template = RedirectTemplate.compile(url)
    response = ResponseParams(
        gid=gid if with_gid else None, cver=cver if with_gid else None, hosted_match=hosted_match
    )
    expected = template.render(scheme, response, extras, extras_first=first)
    redirect = GidRedirect.prepare(
        template, cver, extras_first=first, hosted_match=hosted_match, gid=with_gid
    )
    assert redirect is not None
    assert redirect.location(scheme, gid, [encode_param(p) for p in extras]) == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.sampled_from(["n", "ad_network_xyz", "é"]))
def test_gid_function_is_encrypt(browser_id: bytes, nid: str) -> None:
    cipher = UserIdCipher({1: b"1" * 32, 7: os.urandom(32)})
    for version in (1, 7):
        assert cipher.gid_function(nid, version)(browser_id) == cipher.encrypt(
            browser_id, nid, version
        )
