from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from cookiematch.errors import InvalidUserId
from cookiematch.protocol.userid import HmacSha256, UserIdCipher

from .goldens import load

GOLDEN = load("userid.json")
KEYS = {int(v): bytes.fromhex(k) for v, k in GOLDEN["keys"].items()}
CIPHER = UserIdCipher(KEYS)
GID = re.compile(r"[A-Za-z0-9_-]{27}")
browser_ids = st.binary(min_size=16, max_size=16)
nids = st.text(min_size=1, max_size=20)


def reference_gid(secret: bytes, nid: str, browser_id: bytes) -> str:
    """docs/protocol.md written out with one-shot primitives, independent of the cached code."""

    def sub_key(purpose: str) -> bytes:
        hkdf = HKDF(hashes.SHA256(), 32, b"cookiematch gid", purpose.encode() + nid.encode())
        return hkdf.derive(secret)

    encryptor = Cipher(algorithms.AES(sub_key("enc")), modes.ECB()).encryptor()
    block = encryptor.update(browser_id) + encryptor.finalize()
    tag = hmac.digest(sub_key("mac"), block, "sha256")[:4]
    return base64.urlsafe_b64encode(block + tag).decode().rstrip("=")


@pytest.mark.parametrize(
    "case", GOLDEN["gids"], ids=lambda c: f"{c['nid']}-v{c['version']}-{c['browser_id'][:4]}"
)
def test_golden_gids(case: dict[str, Any]) -> None:
    browser_id = bytes.fromhex(case["browser_id"])
    gid = CIPHER.encrypt(browser_id, case["nid"], case["version"])
    assert gid == case["gid"]
    assert gid == reference_gid(KEYS[case["version"]], case["nid"], browser_id)
    assert CIPHER.decrypt(gid, case["nid"], case["version"]) == browser_id


@pytest.mark.parametrize(
    "case", GOLDEN["derived_keys"], ids=lambda c: f"v{c['version']}-{c['purpose']}"
)
def test_golden_derived_keys(case: dict[str, Any]) -> None:
    key = CIPHER.derive_key(case["version"], case["purpose"], case["nid"])
    assert key.hex() == case["key"]


def test_current_version_is_the_highest() -> None:
    assert CIPHER.current_version == 2
    bid = bytes(16)
    assert CIPHER.encrypt(bid, "n") == CIPHER.encrypt(bid, "n", 2)
    assert UserIdCipher({7: KEYS[1], 3: KEYS[2]}).current_version == 7


@pytest.mark.parametrize(
    "keys",
    [
        {},
        {1: b"short"},
        {1: bytes(33)},
        {1: bytes(32), 2: bytes(31)},
        {-1: bytes(32)},
        {256: bytes(32)},
        {True: bytes(32)},
        {"1": bytes(32)},
        {1: "x" * 32},
    ],
)
def test_bad_keys(keys: Any) -> None:
    with pytest.raises(ValueError):
        UserIdCipher(keys)


def test_repr_hides_secrets() -> None:
    assert KEYS[1].hex() not in repr(CIPHER)
    assert repr(CIPHER) == "UserIdCipher(versions=[1, 2])"


def test_encrypt_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        CIPHER.encrypt(bytes(15), "n")
    with pytest.raises(ValueError):
        CIPHER.encrypt(bytes(16), "n", 9)
    with pytest.raises(ValueError):
        CIPHER.derive_key(1, "other", "n")


def test_block_roundtrip() -> None:
    block = CIPHER.encrypt_block(bytes(16), "n", 1)
    assert len(block) == 16 and block != bytes(16)
    assert CIPHER.decrypt_block(block, "n", 1) == bytes(16)
    assert CIPHER.encrypt(bytes(16), "n", 1).startswith(
        base64.urlsafe_b64encode(block).decode()[:21]
    )


@given(st.binary(max_size=100), st.binary(min_size=1, max_size=100))
def test_hmac_matches_stdlib(message: bytes, key: bytes) -> None:
    assert HmacSha256(key).digest(message) == hmac.digest(key, message, hashlib.sha256)


# --- properties ----------------------------------------------------------------------------


@given(browser_ids, nids, st.sampled_from([1, 2]))
def test_roundtrip_shape_and_stability(browser_id: bytes, nid: str, version: int) -> None:
    gid = CIPHER.encrypt(browser_id, nid, version)
    assert len(gid) == 27
    assert GID.fullmatch(gid)
    assert CIPHER.encrypt(browser_id, nid, version) == gid  # stable
    assert UserIdCipher(KEYS).encrypt(browser_id, nid, version) == gid  # stable across restarts
    assert CIPHER.decrypt(gid, nid, version) == browser_id
    # the cookie does not show through
    assert base64.urlsafe_b64encode(browser_id).decode()[:21] not in gid
    assert browser_id.hex() not in gid


@given(browser_ids, nids, nids)
def test_buyers_differ(browser_id: bytes, nid: str, other: str) -> None:
    if nid == other:
        return
    gid = CIPHER.encrypt(browser_id, nid, 1)
    assert gid != CIPHER.encrypt(browser_id, other, 1)
    with pytest.raises(InvalidUserId):
        CIPHER.decrypt(gid, other, 1)


@given(browser_ids, nids)
def test_versions_differ(browser_id: bytes, nid: str) -> None:
    gid = CIPHER.encrypt(browser_id, nid, 1)
    assert gid != CIPHER.encrypt(browser_id, nid, 2)
    with pytest.raises(InvalidUserId):
        CIPHER.decrypt(gid, nid, 2)
    with pytest.raises(InvalidUserId):
        CIPHER.decrypt(gid, nid, 3)  # unknown version


@given(browser_ids, browser_ids)
def test_browsers_differ(a: bytes, b: bytes) -> None:
    if a != b:
        assert CIPHER.encrypt(a, "n") != CIPHER.encrypt(b, "n")


@given(browser_ids, st.integers(0, 26), st.sampled_from("ABQgw_-09z"))
def test_tamper_is_rejected(browser_id: bytes, position: int, char: str) -> None:
    gid = CIPHER.encrypt(browser_id, "n", 1)
    tampered = gid[:position] + char + gid[position + 1 :]
    if tampered == gid:
        return
    with pytest.raises(InvalidUserId):
        CIPHER.decrypt(tampered, "n", 1)


def test_rotation_keeps_old_gids() -> None:
    old = UserIdCipher({1: KEYS[1]})
    gid = old.encrypt(bytes(16), "n")
    rotated = UserIdCipher(KEYS)
    assert rotated.decrypt(gid, "n", 1) == bytes(16)
    retired = UserIdCipher({2: KEYS[2]})
    with pytest.raises(InvalidUserId):
        retired.decrypt(gid, "n", 1)


@pytest.mark.parametrize(
    "gid",
    [
        "",
        "dGhpcyBpcyBhbiBleGFtGxl",  # the seed's example: 23 chars
        "A" * 26,
        "A" * 28,
        "A" * 27,
        "A" * 26 + "B",  # non-zero unused bits
        "A" * 26 + "=",
        "A" * 25 + "+A",
        "A" * 25 + " A",
        "Ａ" * 27,
    ],
)
def test_malformed_gids(gid: str) -> None:
    with pytest.raises(InvalidUserId):
        CIPHER.decrypt(gid, "n", 1)


def test_non_canonical_spelling_is_rejected() -> None:
    gid = CIPHER.encrypt(bytes(16), "n", 1)
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(gid[-1])
    sibling = (
        gid[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last | 1]
    )
    with pytest.raises(InvalidUserId):
        CIPHER.decrypt(sibling, "n", 1)


@settings(max_examples=300)
@given(
    st.text(max_size=40) | st.text("ABCabc019-_=", min_size=27, max_size=27), st.integers(-1, 300)
)
def test_decrypt_only_invalid_user_id(gid: str, version: int) -> None:
    with contextlib.suppress(InvalidUserId):
        CIPHER.decrypt(gid, "n", version)


@pytest.mark.parametrize("gid", [None, b"x" * 27, 27])
def test_decrypt_non_string(gid: Any) -> None:
    with pytest.raises(InvalidUserId):
        CIPHER.decrypt(gid, "n", 1)
