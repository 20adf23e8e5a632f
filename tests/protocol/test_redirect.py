from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.errors import RedirectURLError
from cookiematch.protocol.query import QueryParam, parse_query
from cookiematch.protocol.redirect import (
    MAX_REDIRECT_URL_LENGTH,
    RedirectTemplate,
    ResponseParams,
)

MATCH = ResponseParams(gid="GID", cver=1)
FULL = ResponseParams(gid="GID", cver=2, user_lists=(("1", 0), ("2", 5)), hosted_match=3, push="P")


def render(
    url: str, response: ResponseParams = MATCH, extras: tuple[QueryParam, ...] = (), **kw: bool
) -> str:
    return RedirectTemplate.compile(url).render("https", response, extras, **kw)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ad.network.com/pixel",
        "//ad.network.com/pixel",
        "ftp://ad.network.com/pixel",
        "javascript:alert(1)",
        "http:/ad.network.com",
        "http://",
        "http:///path",
        "http://?x=1",
        "http://ad.network.com/pixel#frag",
        "http://ad.network.com/pixel?x=1#",
        "http://user@ad.network.com/pixel",
        "http://user:pw@ad.network.com/pixel",
        "http://ad.network.com:port/pixel",
        "http://ad.network.com:123456/pixel",
        "http://ad network.com/pixel",
        "http://-ad.network.com/pixel",
        "http://ad..network.com/pixel",
        "http://ad.network.com/pi xel",
        "http://ad.network.com/pixel?x=\r\nSet-Cookie:a=b",
        "http://ad.network.com/pixel?x=\t",
        "http://ad.network.com/pixel?x=é",
        "http://ad.network.com/pixel?x=<script>",
        "http://ad.network.com/pixel?x=%4",
        "http://ad.network.com/pixel?x=%zz",
        "http://ad.network.com/pixel?x=%%",
        "http://ad.network.com/pixel?x=%%GOOGLE_FOO%%",
        "http://ad.network.com/pixel?x=%%GOOGLE_GID",
        "http://ad.network.com/pixel?x=%%GOOGLE_GID%",
        "http://ad.network.com/pixel?x=%%GOOGLE_GID_PAIRx",
        "http://ad.network.com/pixel?x=%%google_gid%%",
        "http://ad.network.com/pixel?x=1%%GOOGLE_GID_PAIR#",  # accepted macro, but a fragment
        "http://%%GOOGLE_GID%%.network.com/pixel",
        "http://ad.network.com%%GOOGLE_GID_PAIR%%/pixel",
        "http://ad.network.com/" + "x" * MAX_REDIRECT_URL_LENGTH,
    ],
)
def test_compile_rejects(url: str) -> None:
    with pytest.raises(RedirectURLError):
        RedirectTemplate.compile(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://ad.network.com",
        "HTTPS://ad.network.com/pixel",
        "http://ad.network.com:8080/pixel?id=",
        "http://127.0.0.1/p",
        "http://[::1]:8080/p",
        "http://localhost./p",
        "http://cm_sync.buyer.com/p",
        "http://ad.network.com/p%20q?x=%C3%A9",
        "http://ad.network.com/%%GOOGLE_GID%%/pixel",
        "http://ad.network.com/p?x=1%%GOOGLE_GID_PAIR",
        "http://ad.network.com/" + "x" * (MAX_REDIRECT_URL_LENGTH - len("http://ad.network.com/")),
    ],
)
def test_compile_accepts(url: str) -> None:
    assert RedirectTemplate.compile(url).url == url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://a.com", "https://a.com?google_gid=GID&google_cver=1"),
        ("http://a.com/", "https://a.com/?google_gid=GID&google_cver=1"),
        ("http://a.com/p", "https://a.com/p?google_gid=GID&google_cver=1"),
        ("http://a.com/p?", "https://a.com/p?google_gid=GID&google_cver=1"),
        ("http://a.com/p?id=", "https://a.com/p?id=&google_gid=GID&google_cver=1"),
        ("http://a.com/p?id=1&", "https://a.com/p?id=1&google_gid=GID&google_cver=1"),
        ("http://a.com/p?id", "https://a.com/p?id&google_gid=GID&google_cver=1"),
        ("http://a.com/p?a=1&&b", "https://a.com/p?a=1&&b&google_gid=GID&google_cver=1"),
        ("https://a.com/p?x=%41", "https://a.com/p?x=%41&google_gid=GID&google_cver=1"),
    ],
)
def test_append_separator_and_verbatim_base(url: str, expected: str) -> None:
    assert render(url) == expected


def test_scheme_is_the_match_tags() -> None:
    template = RedirectTemplate.compile("https://a.com/p")
    assert template.render("http", MATCH).startswith("http://a.com/p?")
    assert template.render("https", MATCH).startswith("https://a.com/p?")
    with pytest.raises(RedirectURLError):
        template.render("javascript", MATCH)


def test_order_of_appended_response_params() -> None:
    assert render("http://a.com/p", FULL) == (
        "https://a.com/p?google_push=P&google_gid=GID&google_cver=2"
        "&google_ula=1,0&google_ula=2,5&google_hm=3"
    )


def test_error_renders_only_google_error_and_extras() -> None:
    error = ResponseParams(
        gid="GID", cver=1, user_lists=(("1", 0),), hosted_match=2, push="P", error=4
    )
    extras = (QueryParam("x", "1"),)
    assert render("http://a.com/p?id=", error, extras) == "https://a.com/p?id=&x=1&google_error=4"
    assert (
        render("http://a.com/p?a=%%GOOGLE_GID%%%%GOOGLE_CVER_PAIR%%%%GOOGLE_ERROR_PAIR%%", error)
        == "https://a.com/p?a=&google_error=4"
    )


def test_no_response_params_no_separator() -> None:
    assert render("http://a.com/p?id=", ResponseParams()) == "https://a.com/p?id="
    assert render("http://a.com/p", ResponseParams()) == "https://a.com/p"


def test_extras_position() -> None:
    extras = (QueryParam("b", "2"), QueryParam("a", None), QueryParam("c", ""))
    assert render("http://a.com/p?id=", MATCH, extras) == (
        "https://a.com/p?id=&b=2&a&c=&google_gid=GID&google_cver=1"
    )
    assert render("http://a.com/p?id=", MATCH, extras, extras_first=False) == (
        "https://a.com/p?id=&google_gid=GID&google_cver=1&b=2&a&c="
    )
    assert render("http://a.com/p?id=", ResponseParams(), extras) == "https://a.com/p?id=&b=2&a&c="


def test_values_are_encoded() -> None:
    extras = (QueryParam("a b", "x&y=z\r\n"), QueryParam("é", "🍪"))
    response = ResponseParams(gid="a/b+c=", cver=1, user_lists=(("1 2", 5),), push="p&q")
    assert render("http://a.com/p", response, extras) == (
        "https://a.com/p?a%20b=x%26y%3Dz%0D%0A&%C3%A9=%F0%9F%8D%AA&google_push=p%26q"
        "&google_gid=a%2Fb%2Bc%3D&google_cver=1&google_ula=1%202,5"
    )


def test_google_extras_are_never_forwarded() -> None:
    extras = (QueryParam("google_gid", "forged"), QueryParam("x", "1"))
    assert render("http://a.com/p", ResponseParams(), extras) == "https://a.com/p?x=1"


def test_literal_google_params_of_the_configured_url_are_not_passed() -> None:
    assert (
        render("http://a.com/p?google_x=1&id=&google_y", ResponseParams()) == "https://a.com/p?id="
    )
    assert render("http://a.com/p?google_x=1", MATCH) == (
        "https://a.com/p?google_gid=GID&google_cver=1"
    )
    # a google_ parameter carrying a macro is the macro's own
    assert render("http://a.com/p?google_gid=%%GOOGLE_GID%%", MATCH) == (
        "https://a.com/p?google_gid=GID&google_cver=1"
    )


@pytest.mark.parametrize(
    ("url", "response", "expected"),
    [
        # value forms, absent values expand to empty
        ("http://a.com/p?g=%%GOOGLE_GID%%&c=%%GOOGLE_CVER%%", MATCH, "https://a.com/p?g=GID&c=1"),
        (
            "http://a.com/p?g=%%GOOGLE_GID%%&e=%%GOOGLE_ERROR%%",
            MATCH,
            "https://a.com/p?g=GID&e=&google_cver=1",
        ),
        (
            "http://a.com/p?h=%%GOOGLE_HM%%",
            FULL,
            "https://a.com/p?h=3&google_push=P&google_gid=GID&google_cver=2&google_ula=1,0&google_ula=2,5",
        ),
        (
            "http://a.com/p?x=1%%GOOGLE_HM_PAIR%%",
            MATCH,
            "https://a.com/p?x=1&google_gid=GID&google_cver=1",
        ),
        # ULA: one pair per entry; the value form puts further entries right after it
        (
            "http://a.com/p?x=1%%GOOGLE_ULA_PAIR%%&y=2",
            FULL,
            "https://a.com/p?x=1&google_ula=1,0&google_ula=2,5&y=2&google_push=P&google_gid=GID&google_cver=2&google_hm=3",
        ),
        (
            "http://a.com/p?google_ula=%%GOOGLE_ULA%%&y=2",
            ResponseParams(user_lists=(("1", 0), ("2", 5))),
            "https://a.com/p?google_ula=1,0&google_ula=2,5&y=2",
        ),
        ("http://a.com/p?x=1%%GOOGLE_ULA_PAIR%%", ResponseParams(), "https://a.com/p?x=1"),
        # the rendered base decides the separator
        (
            "http://a.com/p?x=1%%GOOGLE_ERROR_PAIR%%",
            MATCH,
            "https://a.com/p?x=1&google_gid=GID&google_cver=1",
        ),
        (
            "http://a.com/p?%%GOOGLE_ERROR_PAIR%%",
            MATCH,
            "https://a.com/p?google_gid=GID&google_cver=1",
        ),
        ("http://a.com/%%GOOGLE_GID%%", MATCH, "https://a.com/GID?google_cver=1"),
        # repeated macro expands each time
        (
            "http://a.com/p?a=%%GOOGLE_GID%%&b=%%GOOGLE_GID%%",
            MATCH,
            "https://a.com/p?a=GID&b=GID&google_cver=1",
        ),
        # unterminated _PAIR at the very end
        (
            "http://a.com/p?x=1%%GOOGLE_CVER_PAIR",
            MATCH,
            "https://a.com/p?x=1&google_cver=1&google_gid=GID",
        ),
    ],
)
def test_macros(url: str, response: ResponseParams, expected: str) -> None:
    assert render(url, response) == expected


def test_placed() -> None:
    template = RedirectTemplate.compile("http://a.com/p?x=%%GOOGLE_GID%%%%GOOGLE_ULA_PAIR%%")
    assert template.placed == frozenset({"google_gid", "google_ula"})


# --- properties ----------------------------------------------------------------------------

anything = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
responses = st.builds(
    ResponseParams,
    gid=st.none() | anything,
    cver=st.none() | st.integers(0, 2**31),
    user_lists=st.lists(st.tuples(anything, st.integers(0, 10)), max_size=4).map(tuple),
    hosted_match=st.none() | st.integers(1, 5),
    error=st.none() | st.integers(1, 5),
    push=st.none() | anything,
)
extras = st.lists(st.builds(QueryParam, anything, st.none() | anything), max_size=6).map(tuple)
templates = st.sampled_from(
    [
        "http://a.com",
        "https://a.com/p?id=",
        "http://user.buyer.com/cookies?w=0%%GOOGLE_PUSH_PAIR%%&x=1%%GOOGLE_GID_PAIR&y=2%%GOOGLE_CVER_PAIR%%&z=3%%GOOGLE_ERROR_PAIR%%",
        "http://a.com/%%GOOGLE_GID%%?u=%%GOOGLE_ULA%%&h=%%GOOGLE_HM%%%%GOOGLE_ULA_PAIR%%",
    ]
)
SAFE_URL = re.compile(r"[\x21-\x7e]+")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control(response: ResponseParams, xs: tuple[QueryParam, ...]) -> bool:
    texts = [response.gid or "", response.push or ""]
    texts += [raw for raw, _ in response.user_lists]
    texts += [p.name + (p.value or "") for p in xs]
    return any(CONTROL.search(t) for t in texts)


@given(templates, st.sampled_from(["http", "https"]), responses, extras, st.booleans())
def test_render_is_always_a_safe_url(
    url: str, scheme: str, response: ResponseParams, xs: tuple[QueryParam, ...], first: bool
) -> None:
    rendered = RedirectTemplate.compile(url).render(scheme, response, xs, extras_first=first)
    assert SAFE_URL.fullmatch(rendered)
    assert rendered.startswith(scheme + "://")
    assert "#" not in rendered
    _, _, query = rendered.partition("?")
    if has_control(response, xs):
        return  # encoded fine, but the strict parser would (rightly) refuse to read it back
    parsed = parse_query(query, max_bytes=10**6)
    forwarded = [p for p in parsed if not p.name.startswith("google_")]
    expected_extras = [p for p in xs if p.name and not p.name.startswith("google_")]
    if "%%GOOGLE_" not in url and "?" not in url:
        assert forwarded == expected_extras
        if response.error is not None:
            assert [p for p in parsed if p.name.startswith("google_")] == [
                QueryParam("google_error", str(response.error))
            ]


def test_privacy_macros_place_the_signals_as_received() -> None:
    template = RedirectTemplate.compile(
        "https://b.example/m?c=%%GDPR_CONSENT%%&g=%%GDPR%%&u=%%US_PRIVACY%%"
        "&p=%%GPP%%&s=%%GPP_SID%%&id="
    )
    extras = [
        QueryParam("gdpr", "1"),
        QueryParam("gdpr_consent", "CQ x"),
        QueryParam("gpp_sid", "2,6"),
        QueryParam("other", "1"),
    ]
    url = template.render("https", ResponseParams(gid="abc", cver=1), extras)
    assert url == (
        "https://b.example/m?c=CQ%20x&g=1&u=&p=&s=2,6&id="
        "&gdpr=1&gdpr_consent=CQ%20x&gpp_sid=2,6&other=1&google_gid=abc&google_cver=1"
    )
    assert template.render("https", ResponseParams(error=1)) == (
        "https://b.example/m?c=&g=&u=&p=&s=&id=&google_error=1"
    )
    assert template.placed == frozenset()


@pytest.mark.parametrize("url", ["https://b.example/m?c=%%GDPR_CONSENTS%%", "https://%%GDPR%%/"])
def test_unknown_or_misplaced_privacy_macros_are_refused(url: str) -> None:
    with pytest.raises(RedirectURLError):
        RedirectTemplate.compile(url)
