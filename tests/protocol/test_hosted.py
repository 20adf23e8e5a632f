from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.errors import HostedMatchError
from cookiematch.protocol.hosted import MAX_HOSTED_MATCH_BYTES, decode_hosted_match

from .goldens import cases


@pytest.mark.parametrize("case", cases("hosted.json"))
def test_golden(case: dict[str, Any]) -> None:
    if "status" in case:
        with pytest.raises(HostedMatchError) as info:
            decode_hosted_match(case["value"])
        assert info.value.status == case["status"]
        assert type(info.value.status) is int
    elif "text" in case:
        assert decode_hosted_match(case["value"]) == case["text"].encode()
    else:
        assert decode_hosted_match(case["value"]) == bytes.fromhex(case["hex"])


@given(st.binary(min_size=1, max_size=MAX_HOSTED_MATCH_BYTES), st.booleans())
def test_roundtrip(data: bytes, padded: bool) -> None:
    encoded = base64.urlsafe_b64encode(data).decode()
    if not padded:
        encoded = encoded.rstrip("=")
    assert decode_hosted_match(encoded) == data


@given(st.binary(min_size=MAX_HOSTED_MATCH_BYTES + 1, max_size=200))
def test_too_long(data: bytes) -> None:
    with pytest.raises(HostedMatchError) as info:
        decode_hosted_match(base64.urlsafe_b64encode(data).decode())
    assert info.value.status == 3


@given(st.text(max_size=60) | st.text("ABCabc019-_=+/!", max_size=60))
def test_only_hosted_match_error(value: str) -> None:
    try:
        data = decode_hosted_match(value)
    except HostedMatchError as exc:
        assert exc.status in (2, 3)
    else:
        assert 0 < len(data) <= MAX_HOSTED_MATCH_BYTES
