"""The signed opt-out notice: signature bound to body, secret and time; bad bodies refused."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from cookiematch.protocol.optout_notice import (
    MAX_SKEW_SECONDS,
    OptOutNotice,
    decode_notice,
    encode_notice,
    sign,
    verify,
)

SECRET = b"s" * 32
NOTICE = OptOutNotice(id="n1", nid="buyer1", google_gids=["a" * 27, "b" * 27], time=1_800_000_000)


def test_round_trip_and_the_signature_is_hmac_over_time_and_body() -> None:
    body = encode_notice(NOTICE)
    assert decode_notice(body) == NOTICE
    header = sign(SECRET, body, 1_800_000_000)
    expected = hmac.new(SECRET, b"1800000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1800000000,v1={expected}"
    assert verify(SECRET, body, header, 1_800_000_000 + MAX_SKEW_SECONDS)


@pytest.mark.parametrize(
    "change",
    [
        lambda body, header, now: (body + b" ", header, now),
        lambda body, header, now: (body, header.replace("t=1800000000", "t=1800000001"), now),
        lambda body, header, now: (body, header, now + MAX_SKEW_SECONDS + 1),
        lambda body, header, now: (body, header, now - MAX_SKEW_SECONDS - 1),
        lambda body, header, now: (body, None, now),
        lambda body, header, now: (body, "", now),
        lambda body, header, now: (body, "t=x,v1=00", now),
        lambda body, header, now: (body, "v1=" + header.split("v1=")[1], now),
        lambda body, header, now: (body, header.split(",")[0], now),
    ],
)
def test_anything_but_the_signed_body_in_time_is_refused(change) -> None:  # type: ignore[no-untyped-def]
    body = encode_notice(NOTICE)
    header = sign(SECRET, body, 1_800_000_000)
    assert not verify(SECRET, *change(body, header, 1_800_000_000))


def test_another_secret_or_an_empty_one_is_refused() -> None:
    body = encode_notice(NOTICE)
    assert not verify(b"t" * 32, body, sign(SECRET, body, 100), 100)
    assert not verify(b"", body, sign(b"", body, 100), 100)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"type": "optout", "id": "x", "nid": "b", "google_gids": [], "time": 1}',
        b'{"type": "other", "id": "x", "nid": "b", "google_gids": ["g"], "time": 1}',
        b'{"id": "x", "nid": "b", "google_gids": "g", "time": 1}',
        b'{"type": "optout", "id": "x", "nid": "b", "google_gids": ["g"], "time": 1}' + b" " * 5000,
    ],
)
def test_bodies_that_are_not_a_notice(body: bytes) -> None:
    assert decode_notice(body) is None
