from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.errors import QueryError
from cookiematch.protocol.query import (
    MAX_QUERY_BYTES,
    QueryParam,
    encode_component,
    encode_query,
    is_literal,
    parse_query,
)

from .goldens import cases


@pytest.mark.parametrize("case", cases("query.json"))
def test_golden(case: dict[str, Any]) -> None:
    raw: bytes | str = bytes.fromhex(case["raw_hex"]) if "raw_hex" in case else case["raw"]
    if "error" in case:
        with pytest.raises(QueryError):
            parse_query(raw)
    else:
        assert [[p.name, p.value] for p in parse_query(raw)] == case["expected"]


@pytest.mark.parametrize("raw", [b"a=1", "a=1"])
def test_bytes_and_str(raw: bytes | str) -> None:
    assert parse_query(raw) == (QueryParam("a", "1"),)


def test_str_with_lone_surrogate() -> None:
    with pytest.raises(QueryError):
        parse_query("a=\ud800")


def test_size_limit() -> None:
    at_limit = b"a=" + b"x" * (MAX_QUERY_BYTES - 2)
    assert parse_query(at_limit)[0].value == "x" * (MAX_QUERY_BYTES - 2)
    with pytest.raises(QueryError, match="longer"):
        parse_query(at_limit + b"x")
    with pytest.raises(QueryError):
        parse_query(b"a=1", max_bytes=2)


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("", ""),
        ("abcXYZ019-._~", "abcXYZ019-._~"),
        ("12345,0", "12345,0"),
        ("a b", "a%20b"),
        ("+&=%#?/;:@", "%2B%26%3D%25%23%3F%2F%3B%3A%40"),
        ("é", "%C3%A9"),
        ("🍪", "%F0%9F%8D%AA"),
        ("\r\n", "%0D%0A"),
        ("<push_data>", "%3Cpush_data%3E"),
        ("Q29va2llIG51bWJlciAxIQ==", "Q29va2llIG51bWJlciAxIQ%3D%3D"),
    ],
)
def test_encode_component(text: str, encoded: str) -> None:
    assert encode_component(text) == encoded
    assert is_literal(text) is (encoded == text)


def test_encode_query_keeps_flags_valueless() -> None:
    params = (QueryParam("google_cm", None), QueryParam("x", ""), QueryParam("a b", "c&d"))
    assert encode_query(params) == "google_cm&x=&a%20b=c%26d"
    assert encode_query([]) == ""


# --- properties ----------------------------------------------------------------------------

# Any text the parser accepts: no C0 controls / DEL (rejected by design), no surrogates
# (not encodable as UTF-8).
text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters=[chr(0x7F)], min_codepoint=0x20)
)
params = st.lists(
    st.builds(QueryParam, text.filter(bool), st.none() | text),
    max_size=20,
)


@given(params)
def test_roundtrip(ps: list[QueryParam]) -> None:
    assert parse_query(encode_query(ps), max_bytes=10**6) == tuple(ps)


@given(text)
def test_encoded_is_ascii_and_safe(t: str) -> None:
    encoded = encode_component(t)
    assert encoded.isascii()
    assert not any(c in encoded for c in " &=+#?\r\n\t")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_query_error(raw: bytes) -> None:
    try:
        result = parse_query(raw)
    except QueryError:
        return
    for p in result:
        assert p.name
        assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in p.name + (p.value or ""))


@given(st.text(max_size=300))
def test_arbitrary_text_only_query_error(raw: str) -> None:
    with contextlib.suppress(QueryError):
        parse_query(raw)


@given(
    st.lists(
        st.sampled_from(
            ["%", "%4", "%zz", "%ff", "a", "=", "&", "+", "%41", "%C3%A9", "\x00", "é"]
        ),
        max_size=30,
    )
)
def test_fragments_only_query_error(pieces: list[str]) -> None:
    with contextlib.suppress(QueryError):
        parse_query("".join(pieces))
