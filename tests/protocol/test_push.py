from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.errors import InvalidPushToken
from cookiematch.protocol.push import MAX_CLOCK_SKEW_SECONDS, PushClaim, PushTokens
from cookiematch.protocol.userid import UserIdCipher, b64url_nopad, b64url_nopad_decode

from .goldens import load

GOLDEN = load("userid.json")
KEYS = {int(v): bytes.fromhex(k) for v, k in GOLDEN["keys"].items()}
CIPHER = UserIdCipher(KEYS)
TOKENS = PushTokens(CIPHER, ttl_seconds=3600)
NOW = 1_700_000_000
BID = bytes(range(16))


@pytest.mark.parametrize(
    "case", GOLDEN["push_tokens"], ids=lambda c: f"{c['nid']}-{c['browser_id'][:4]}"
)
def test_golden(case: dict[str, Any]) -> None:
    browser_id = bytes.fromhex(case["browser_id"])
    token = TOKENS.issue(browser_id, case["nid"], case["issued_at"])
    assert token == case["token"]
    claim = TOKENS.verify(token, case["nid"], case["issued_at"] + 10)
    assert claim == PushClaim(browser_id, CIPHER.current_version, case["issued_at"])


def test_layout() -> None:
    token = TOKENS.issue(BID, "n", NOW)
    assert len(token) == 44
    data = b64url_nopad_decode(token)
    assert len(data) == 33
    assert data[0] == CIPHER.current_version
    assert int.from_bytes(data[1:5], "big") == NOW
    # C is the same block as in the buyer's gid: the raw cookie never shows
    assert data[5:21] == CIPHER.encrypt_block(BID, "n", CIPHER.current_version)
    assert BID not in data


@pytest.mark.parametrize(
    ("age", "valid"),
    [
        (0, True),
        (3599, True),
        (3600, False),
        (10**6, False),
        (-MAX_CLOCK_SKEW_SECONDS, True),
        (-MAX_CLOCK_SKEW_SECONDS - 1, False),
    ],
)
def test_expiry(age: int, valid: bool) -> None:
    token = TOKENS.issue(BID, "n", NOW)
    if valid:
        assert TOKENS.verify(token, "n", NOW + age).browser_id == BID
    else:
        with pytest.raises(InvalidPushToken):
            TOKENS.verify(token, "n", NOW + age)


def test_other_buyer_is_rejected() -> None:
    token = TOKENS.issue(BID, "n", NOW)
    with pytest.raises(InvalidPushToken):
        TOKENS.verify(token, "other", NOW)


def test_old_version_still_verifies_and_retired_does_not() -> None:
    old = PushTokens(UserIdCipher({1: KEYS[1]}))
    token = old.issue(BID, "n", NOW)
    assert TOKENS.verify(token, "n", NOW).version == 1
    with pytest.raises(InvalidPushToken):
        PushTokens(UserIdCipher({2: KEYS[2]})).verify(token, "n", NOW)


def test_version_byte_cannot_be_swapped() -> None:
    data = bytearray(b64url_nopad_decode(TOKENS.issue(BID, "n", NOW)))
    data[0] = 1
    with pytest.raises(InvalidPushToken):
        TOKENS.verify(b64url_nopad(bytes(data)), "n", NOW)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        PushTokens(CIPHER, ttl_seconds=0)
    with pytest.raises(ValueError):
        TOKENS.issue(BID, "n", -1)
    with pytest.raises(ValueError):
        TOKENS.issue(BID, "n", 2**32)
    with pytest.raises(ValueError):
        TOKENS.issue(bytes(15), "n", NOW)


@given(st.integers(0, 33 * 8 - 1))
def test_any_bit_flip_is_rejected(bit: int) -> None:
    data = bytearray(b64url_nopad_decode(TOKENS.issue(BID, "n", NOW)))
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidPushToken):
        TOKENS.verify(b64url_nopad(bytes(data)), "n", NOW)


@given(
    st.binary(min_size=16, max_size=16), st.text(min_size=1, max_size=20), st.integers(0, 2**32 - 1)
)
def test_roundtrip(browser_id: bytes, nid: str, now: int) -> None:
    token = TOKENS.issue(browser_id, nid, now)
    assert TOKENS.verify(token, nid, now) == PushClaim(browser_id, 2, now)


@given(
    st.text(max_size=60) | st.text("ABCabc019-_", min_size=44, max_size=44), st.integers(0, 2**33)
)
def test_verify_only_invalid_push_token(token: str, now: int) -> None:
    with contextlib.suppress(InvalidPushToken):
        TOKENS.verify(token, "n", now)


@pytest.mark.parametrize(
    "token", [None, "", "PUSH_DATA", "<push_data>", "A" * 43, "A" * 45, "A" * 44]
)
def test_malformed(token: Any) -> None:
    with pytest.raises(InvalidPushToken):
        TOKENS.verify(token, "n", NOW)
