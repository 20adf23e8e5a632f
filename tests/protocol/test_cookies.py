from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.protocol.cookies import (
    MAX_COOKIE_HEADER_BYTES,
    OPT_OUT_VALUE,
    CookieSpec,
    IdCookie,
    format_browser_id,
    new_browser_id,
    parse_browser_id,
    parse_cookie_header,
    read_id_cookie,
)

from .goldens import cases


@pytest.mark.parametrize("case", cases("cookies.json"))
def test_parse_cookie_header_golden(case: dict[str, Any]) -> None:
    assert parse_cookie_header(case["header"]) == case["expected"]


@given(st.text(max_size=200))
def test_parse_cookie_header_never_raises(header: str) -> None:
    for name, value in parse_cookie_header(header).items():
        assert name
        assert name == name.strip()
        assert isinstance(value, str)


def _as_read(value: str | None) -> str | IdCookie:
    """What read_id_cookie answers for a cookie value found by the full parse."""
    if value is None:
        return IdCookie.ABSENT
    return IdCookie.OPTED_OUT if value == OPT_OUT_VALUE else value


@pytest.mark.parametrize("case", cases("cookies.json"))
def test_read_id_cookie_golden(case: dict[str, Any]) -> None:
    for name, value in case["expected"].items():
        assert read_id_cookie(case["header"], name) == _as_read(value)
    assert read_id_cookie(case["header"], "not-in-any-golden-header") is IdCookie.ABSENT


_COOKIE_TEXT = st.text(alphabet=st.sampled_from(list(' ;="abAB_-xOPT_OUT')), max_size=60)


@given(_COOKIE_TEXT, st.sampled_from(["a", "b", "ab", "x_", "A"]))
def test_read_id_cookie_agrees_with_the_full_parse(header: str, name: str) -> None:
    assert read_id_cookie(header, name) == _as_read(parse_cookie_header(header).get(name))


ID = "AAECAwQFBgcICQoLDA0ODw"
BIG = "x=" + "y" * (MAX_COOKIE_HEADER_BYTES - 2)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", IdCookie.ABSENT),  # no Cookie header
        ("other=1", IdCookie.ABSENT),
        ("cm_idx=1; xcm_id=2", IdCookie.ABSENT),  # the name must match exactly
        ("cm_id", IdCookie.ABSENT),  # a piece without '=' is no cookie
        (f"cm_id={ID}", ID),
        (f" a=1 ;  cm_id = {ID} ; b=2", ID),
        (f'cm_id="{ID}"', ID),
        (f"cm_id={ID}; cm_id=OPT_OUT", ID),  # the first one wins
        ("cm_id=", ""),  # present but empty: the caller finds no ID in it
        ("cm_id=not-an-id", "not-an-id"),  # not checked here: the caller parses it
        ("cm_id=OPT_OUT", IdCookie.OPTED_OUT),
        ('cm_id="OPT_OUT"', IdCookie.OPTED_OUT),
        ("cm_id=opt_out", "opt_out"),  # the opt-out value is case-sensitive
        ("cm_id=OPT_OUT; cm_id=" + ID, IdCookie.OPTED_OUT),
        (BIG, IdCookie.ABSENT),  # exactly the cap: read
        (BIG + "y", IdCookie.OVERSIZED),  # one over: not read at all
        (f"cm_id={ID}; " + BIG, IdCookie.OVERSIZED),  # even with the cookie up front
        ("cm_id=OPT_OUT; " + BIG, IdCookie.OVERSIZED),
    ],
)
def test_read_id_cookie(header: str, expected: str | IdCookie) -> None:
    assert read_id_cookie(header, "cm_id") == expected


def test_parse_cookie_header_non_string() -> None:
    assert parse_cookie_header(None) == {}  # type: ignore[arg-type]


BID = bytes(range(16))


def test_browser_id_format() -> None:
    assert new_browser_id(BID) == BID
    assert format_browser_id(BID) == "AAECAwQFBgcICQoLDA0ODw"
    assert parse_browser_id("AAECAwQFBgcICQoLDA0ODw") == BID
    assert format_browser_id(b"\xff" * 16) == "_____________________w"


@pytest.mark.parametrize("size", [0, 15, 17, 32])
def test_new_browser_id_needs_16_bytes(size: int) -> None:
    with pytest.raises(ValueError):
        new_browser_id(b"\0" * size)


@pytest.mark.parametrize(
    "value",
    [
        "",
        OPT_OUT_VALUE,
        "AAECAwQFBgcICQoLDA0OD",  # 21
        "AAECAwQFBgcICQoLDA0ODwA",  # 23
        "AAECAwQFBgcICQoLDA0ODw==",  # padded
        "AAECAwQFBgcICQoLDA0ODx",  # non-zero unused bits
        "AAECAwQFBgcICQoLDA0OD+",  # standard alphabet
        "AAECAwQFBgcICQoLDA0O/w",
        "AAECAwQFBgcICQoLDA0OD ",
        "ＡAECAwQFBgcICQoLDA0ODw",
    ],
)
def test_parse_browser_id_rejects(value: str) -> None:
    assert parse_browser_id(value) is None


@given(st.binary(min_size=16, max_size=16))
def test_browser_id_roundtrip(bid: bytes) -> None:
    text = format_browser_id(bid)
    assert len(text) == 22
    assert parse_browser_id(text) == bid


@given(st.text(max_size=30))
def test_parse_browser_id_never_raises(value: str) -> None:
    bid = parse_browser_id(value)
    assert bid is None or (len(bid) == 16 and format_browser_id(bid) == value)


def test_cookie_spec_header_defaults() -> None:
    spec = CookieSpec("cm_id")
    assert spec.header("abc") == (
        "cm_id=abc; Max-Age=33696000; Path=/; Secure; HttpOnly; SameSite=None"
    )
    assert spec.expire_header() == ("cm_id=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=None")


def test_cookie_spec_attributes_switched_off_or_on() -> None:
    spec = CookieSpec(
        "cm", max_age=60, secure=False, http_only=False, same_site="", path="", domain="ex.com"
    )
    assert spec.header(OPT_OUT_VALUE) == "cm=OPT_OUT; Max-Age=60; Domain=ex.com"
    assert spec.expire_header() == "cm=; Max-Age=0; Domain=ex.com"
    lax = CookieSpec("cm", same_site="Lax", domain=".ex.com", path="/x")
    assert (
        lax.header("v")
        == "cm=v; Max-Age=33696000; Path=/x; Domain=.ex.com; Secure; HttpOnly; SameSite=Lax"
    )


@pytest.mark.parametrize("value", ["a;b", "a b", "a\r\nSet-Cookie: x=y", 'a"b', "a,b", "a\\b", "é"])
def test_cookie_spec_refuses_unsafe_values(value: str) -> None:
    with pytest.raises(ValueError):
        CookieSpec("cm").header(value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": "a b"},
        {"name": "a=b"},
        {"name": "a;b"},
        {"name": "cm", "same_site": "none"},
        {"name": "cm", "max_age": -1},
        {"name": "cm", "domain": "ex.com;x=y"},
        {"name": "cm", "path": "/\r\n"},
    ],
)
def test_cookie_spec_validates(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CookieSpec(**kwargs)
