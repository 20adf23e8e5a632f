"""protocol/url.py: the one http(s) URL parser, by table and by property (hypothesis), and
against the standard library's urlsplit and httpx's parser."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cookiematch.errors import InvalidURL
from cookiematch.protocol.url import (
    MAX_URL_LENGTH,
    HttpURL,
    parse_absolute_url,
    parse_origin,
    parse_url,
)


def is_absolute_http_url(url: object) -> bool:
    """Whether ``parse_absolute_url`` accepts ``url`` (a non-string is refused too)."""
    try:
        parse_absolute_url(url)  # type: ignore[arg-type]
    except InvalidURL:
        return False
    return True


# --- valid URLs: (url, scheme, host, port, path, query, fragment) ----------------------------

VALID = [
    ("http://a.example", "http", "a.example", None, "", None, None),
    ("https://a.example/", "https", "a.example", None, "/", None, None),
    ("HTTPS://A.Example/P", "https", "A.Example", None, "/P", None, None),  # host as written
    ("http://a.example:8080/p?x=1&y=", "http", "a.example", 8080, "/p", "x=1&y=", None),
    ("http://a.example:1/", "http", "a.example", 1, "/", None, None),
    ("http://a.example:65535/", "http", "a.example", 65535, "/", None, None),
    ("http://a.example/p?", "http", "a.example", None, "/p", "", None),
    ("http://a.example/p#", "http", "a.example", None, "/p", None, ""),
    ("http://a.example/p?q#f", "http", "a.example", None, "/p", "q", "f"),
    ("http://a.example#f", "http", "a.example", None, "", None, "f"),
    ("http://localhost./p", "http", "localhost.", None, "/p", None, None),  # trailing dot
    ("http://cm_sync.buyer.com/p", "http", "cm_sync.buyer.com", None, "/p", None, None),
    ("http://xn--bcher-kva.example/", "http", "xn--bcher-kva.example", None, "/", None, None),
    ("http://a-b.c-d.example/", "http", "a-b.c-d.example", None, "/", None, None),
    ("http://1a.example/", "http", "1a.example", None, "/", None, None),
    ("http://127.0.0.1:8710/bid", "http", "127.0.0.1", 8710, "/bid", None, None),
    ("http://[::1]:8080/p", "http", "::1", 8080, "/p", None, None),
    ("http://[2001:db8::7]/", "http", "2001:db8::7", None, "/", None, None),
    ("http://[::ffff:192.0.2.1]/", "http", "::ffff:192.0.2.1", None, "/", None, None),
    ("http://a.example/p%20q?x=%C3%A9", "http", "a.example", None, "/p%20q", "x=%C3%A9", None),
    ("http://a.example/a:b@c/;p=1", "http", "a.example", None, "/a:b@c/;p=1", None, None),
    ("http://a.example/?u=http://b.example/?c=1", "http", "a.example", None, "/",
     "u=http://b.example/?c=1", None),
    ("http://a.example/!$&'()*+,;=-._~", "http", "a.example", None, "/!$&'()*+,;=-._~", None,
     None),
    ("http://" + "a" * 63 + ".example/", "http", "a" * 63 + ".example", None, "/", None, None),
]  # fmt: skip


@pytest.mark.parametrize(("url", "scheme", "host", "port", "path", "query", "fragment"), VALID)
def test_valid(
    url: str,
    scheme: str,
    host: str,
    port: int | None,
    path: str,
    query: str | None,
    fragment: str | None,
) -> None:
    parsed = parse_url(url)
    assert parsed == HttpURL(scheme, host, port, path, query, fragment)
    assert str(parsed) == scheme + url[len(scheme) :]  # as written, the scheme lower case
    assert is_absolute_http_url(url) is (fragment is None)


# --- invalid URLs: (url, the reason says) ----------------------------------------------------

INVALID = [
    # not a URL of ours
    ("", "must be absolute http:// or https://"),
    ("a.example/p", "must be absolute http:// or https://"),
    ("/pixel", "must be absolute http:// or https://"),
    ("//a.example/p", "must be absolute http:// or https://"),
    ("ftp://a.example/p", "must be absolute http:// or https://"),
    ("javascript:alert(1)", "must be absolute http:// or https://"),
    ("http:/a.example/p", "must be absolute http:// or https://"),
    ("http:a.example", "must be absolute http:// or https://"),
    ("httpx://a.example/", "must be absolute http:// or https://"),
    # length
    ("http://a.example/" + "x" * (MAX_URL_LENGTH - 16), f"longer than {MAX_URL_LENGTH}"),
    # whitespace and controls
    (" http://a.example/", "leading or trailing whitespace"),
    ("http://a.example/\n", "leading or trailing whitespace"),
    ("\thttp://a.example/", "leading or trailing whitespace"),
    ("http://a.example/p q", "forbidden character ' ' in the path"),
    ("http://a.example/p?x=\r\nSet-Cookie:a=b", "forbidden character '\\r' in the query"),
    ("http://a.example/p?x=\t&y", "forbidden character '\\t' in the query"),
    ("http://a.example/p\x00", "forbidden character '\\x00' in the path"),
    ("http://a.example/p\x7f", "forbidden character '\\x7f' in the path"),
    ("http://a.example/p?\x85y", "forbidden character '\\x85' in the query"),
    ("http://a.example/p#\u2028f", "forbidden character '\\u2028' in the fragment"),
    ("http://a .example/", "no valid host: 'a .example'"),
    ("http://a\x00.example/", "no valid host"),
    # characters RFC 3986 does not allow unencoded
    ("http://a.example/é", "forbidden character 'é' in the path"),
    ("http://a.example/p?x=<script>", "forbidden character '<' in the query"),
    ('http://a.example/"', "forbidden character '\"' in the path"),
    ("http://a.example/{x}", "forbidden character '{' in the path"),
    ("http://a.example/p?a|b", "forbidden character '|' in the query"),
    ("http://a.example/p\\q", "forbidden character '\\\\' in the path"),
    ("http://a.example/p^", "forbidden character '^' in the path"),
    ("http://a.example/`", "forbidden character '`' in the path"),
    ("http://a.example/p?a[]=1", "forbidden character '[' in the query"),
    ("http://a.example/p#a#b", "forbidden character '#' in the fragment"),
    # percent-encoding
    ("http://a.example/p?x=%4", "bad percent-encoding in the query: '%4'"),
    ("http://a.example/p?x=%zz", "bad percent-encoding in the query: '%zz'"),
    ("http://a.example/%", "bad percent-encoding in the path: '%'"),
    ("http://a.example/p#%g0", "bad percent-encoding in the fragment: '%g0'"),
    # user info: refused
    ("http://user@a.example/p", "must not contain user info"),
    ("http://user:pw@a.example/p", "must not contain user info"),
    ("http://:pw@a.example/p", "must not contain user info"),
    ("http://@a.example/p", "must not contain user info"),
    # hosts
    ("http:///p", "no valid host: ''"),
    ("http://?x=1", "no valid host: ''"),
    ("http://:80/", "no valid host: ''"),
    ("http://-a.example/", "no valid host"),
    ("http://a-.example/", "no valid host"),
    ("http://a..example/", "no valid host"),
    ("http://.a.example/", "no valid host"),
    ("http://a.example../", "no valid host"),
    ("http://./", "no valid host"),
    ("http://" + "a" * 64 + ".example/", "no valid host"),
    ("http://" + "a." * 126 + "ab/", "no valid host"),  # 254 characters
    ("http://a%41.example/", "no valid host"),
    ("http://a!.example/", "no valid host"),
    ("http://a.example,b.example/", "no valid host"),
    ("http://bücher.example/", "xn-- form"),
    ("http://ａ.example/", "xn-- form"),  # a fullwidth letter
    ("http://256.0.0.1/", "not an IPv4 address"),
    ("http://1.2.3/", "not an IPv4 address"),
    ("http://1.2.3.4.5/", "not an IPv4 address"),
    ("http://01.2.3.4/", "not an IPv4 address"),
    ("http://1.2.3.4./", "not an IPv4 address"),
    ("http://example.123/", "not an IPv4 address"),
    ("http://[::1/", "no valid host"),
    ("http://[::1]x/", "no valid host"),
    ("http://[]/", "not an IPv6 address"),
    ("http://[:::]/", "not an IPv6 address"),
    ("http://[1.2.3.4]/", "not an IPv6 address"),
    ("http://[::g]/", "not an IPv6 address"),
    ("http://[fe80::1%25eth0]/", "not an IPv6 address"),  # zones are refused
    ("http://[v1.x]/", "not an IPv6 address"),
    ("http://::1/", "no valid host: ''"),
    # ports
    ("http://a.example:/p", "invalid port: ''"),
    ("http://a.example:0/", "invalid port: '0'"),
    ("http://a.example:65536/", "invalid port: '65536'"),
    ("http://a.example:123456/", "invalid port: '123456'"),
    ("http://a.example:080/", "invalid port: '080'"),
    ("http://a.example:port/", "invalid port: 'port'"),
    ("http://a.example:+80/", "invalid port: '+80'"),
    ("http://a.example:8_0/", "invalid port: '8_0'"),
    ("http://a.example:８０/", "invalid port"),  # fullwidth digits
    ("http://[::1]:0/", "invalid port: '0'"),
    ("http://[::1]:/", "invalid port: ''"),
    ("http://a.example:80:81/", "invalid port: '80:81'"),
    # a query needs a path
    ("http://a.example?x=1", "needs a path before its query"),
    ("http://a.example:8080?", "needs a path before its query"),
]


@pytest.mark.parametrize(("url", "reason"), INVALID)
def test_invalid(url: str, reason: str) -> None:
    with pytest.raises(InvalidURL) as caught:
        parse_url(url)
    assert reason in caught.value.reason
    assert str(caught.value) == f"URL {caught.value.reason}"
    assert not is_absolute_http_url(url)


def test_the_longest_url_is_accepted() -> None:
    url = "http://a.example/" + "x" * (MAX_URL_LENGTH - 17)
    assert len(url) == MAX_URL_LENGTH
    assert parse_absolute_url(url).path == url[16:]


@pytest.mark.parametrize("url", ["http://a.example/p#f", "http://a.example/#", "http://a#"])
def test_an_absolute_url_has_no_fragment(url: str) -> None:
    assert parse_url(url).fragment is not None
    with pytest.raises(InvalidURL, match="must not have a fragment"):
        parse_absolute_url(url)


@pytest.mark.parametrize("value", [None, 1, b"http://a.example/", ["http://a.example/"]])
def test_not_a_string(value: object) -> None:
    with pytest.raises(InvalidURL, match="must be a string"):
        parse_url(value)  # type: ignore[arg-type]
    assert not is_absolute_http_url(value)


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        ("http://shop.localhost:8000", True),
        ("https://shop.example", True),
        ("http://[::1]:8720", True),
        ("https://shop.example/", False),  # an Origin header never has a path
        ("https://shop.example/p", False),
        ("https://shop.example?x", False),
        ("https://shop.example/?x", False),
        ("https://shop.example#f", False),
        ("shop.example", False),
    ],
)
def test_origins(origin: str, ok: bool) -> None:
    if ok:
        assert parse_origin(origin).origin == origin
    else:
        with pytest.raises(InvalidURL):
            parse_origin(origin)


# --- macros (templates) -----------------------------------------------------------------------

MACRO = re.compile(r"\$\{[A-Z_]+\}")


def test_macros_are_exempt_in_the_path_and_query_only() -> None:
    url = "https://a.example/u/${UID}?r=${CALLBACK_URL}&x=1"
    parsed = parse_absolute_url(url, macros=MACRO)
    assert (parsed.path, parsed.query) == ("/u/${UID}", "r=${CALLBACK_URL}&x=1")
    with pytest.raises(InvalidURL, match="forbidden character"):
        parse_absolute_url(url)
    for bad in ("https://${UID}.a.example/", "https://a.example:${PORT}/", "${S}://a.example/"):
        with pytest.raises(InvalidURL, match=r"not allowed in the host|must be absolute"):
            parse_absolute_url(bad, macros=MACRO)


def test_text_around_macros_is_still_checked() -> None:
    with pytest.raises(InvalidURL, match="bad percent-encoding in the query: '%zz'"):
        parse_absolute_url("https://a.example/?x=%zz&u=${UID}", macros=MACRO)
    with pytest.raises(InvalidURL, match="forbidden character '}'"):
        parse_absolute_url("https://a.example/?x=}${UID}", macros=MACRO)


# --- properties -------------------------------------------------------------------------------

_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_PCHAR = st.sampled_from(list(_UNRESERVED + "!$&'()*+,;=:@")) | st.builds(
    lambda b: f"%{b:02X}", st.integers(0, 255)
)
_label = st.from_regex(r"[a-z0-9_]([a-z0-9_-]{0,10}[a-z0-9_])?", fullmatch=True)
_name = (
    st.lists(_label, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda name: not name.rsplit(".", 1)[-1].isdigit())
)
_hosts = _name | st.ip_addresses(v=4).map(str) | st.ip_addresses(v=6).map(lambda a: f"[{a}]")
_segments = st.lists(st.lists(_PCHAR, max_size=8).map("".join), max_size=4)
_query = st.none() | st.lists(_PCHAR | st.sampled_from("/?"), max_size=20).map("".join)


@st.composite
def _urls(draw: st.DrawFn) -> tuple[str, str, str, int | None, str, str | None]:
    scheme = draw(st.sampled_from(["http", "https"]))
    host = draw(_hosts)
    port = draw(st.none() | st.integers(1, 65535))
    segments = draw(_segments)
    query = draw(_query)
    path = "".join("/" + s for s in segments)
    if query is not None and not path:
        path = "/"
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"
    url += "" if query is None else f"?{query}"
    return url, scheme, host.strip("[]"), port, path, query


@given(_urls())
def test_generated_urls_parse_into_their_parts(
    case: tuple[str, str, str, int | None, str, str | None],
) -> None:
    url, scheme, host, port, path, query = case
    assert parse_absolute_url(url) == HttpURL(scheme, host, port, path, query)
    assert str(parse_absolute_url(url)) == url
    assert is_absolute_http_url(url)


@given(_urls())
def test_urlsplit_and_httpx_read_accepted_urls_the_same(
    case: tuple[str, str, str, int | None, str, str | None],
) -> None:
    """Differential: what we accept, two parsers nobody here wrote read the same way."""
    url, scheme, host, port, path, query = case
    split = urlsplit(url)
    assert (split.scheme, split.hostname, split.port) == (scheme, host.lower(), port)
    assert (split.path, split.query, split.fragment) == (path, query or "", "")
    parsed = httpx.URL(url)
    assert parsed.scheme == scheme
    assert parsed.host == host.lower() or ":" in host  # httpx compresses IPv6 addresses
    assert parsed.port == (None if port == {"http": 80, "https": 443}[scheme] else port)


_FORBIDDEN = st.sampled_from(list(' "<>\\^`{|}[]')) | st.characters(
    exclude_characters=_UNRESERVED + "!$&'()*+,;=:@/?#%"
)


@given(_urls(), _FORBIDDEN, st.integers(0, 10_000))
def test_any_forbidden_character_after_the_host_is_refused(
    case: tuple[str, str, str, int | None, str, str | None], char: str, where: int
) -> None:
    url, path = case[0], case[4]
    assume(path)  # right after the host a character would be part of the host
    start = len(parse_url(url).origin) + 1
    position = start + where % (len(url) - start + 1)
    bad = url[:position] + char + url[position:]
    assume(not bad[-1].isspace())  # the whitespace rule answers first
    with pytest.raises(InvalidURL, match="forbidden character"):
        parse_url(bad)


@given(st.text(max_size=80) | st.builds(lambda s: "http://" + s, st.text(max_size=80)))
def test_never_raises_anything_but_invalid_url(text: str) -> None:
    try:
        parsed = parse_url(text)
    except InvalidURL as exc:
        assert exc.reason
        return
    assert parsed.scheme in ("http", "https")
    assert str(parsed).lower() == text.lower()
    assert text.isascii() and text.isprintable()
