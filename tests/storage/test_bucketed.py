"""``Buckets``' field names: the fast Base85 encoder writes what ``base64.b85encode`` wrote, so
entries stored before it are found."""

from __future__ import annotations

import base64
import random

from cookiematch.storage.bucketed import Buckets, b85


def test_b85_is_base64_b85encode() -> None:
    rng = random.Random(85)
    for n in range(70):
        for _ in range(50):
            data = rng.randbytes(n)
            assert b85(data) == base64.b85encode(data).decode("ascii"), data
    for data in (b"", b"\0" * 20, b"\xff" * 20, b"\xff" * 32, b"\xff" * 36):
        assert b85(data) == base64.b85encode(data).decode("ascii")


def test_a_field_is_the_id_in_base85() -> None:
    entry_id = bytes(range(20))
    key, name = Buckets("bm:dsp:g", 16).locate(entry_id)
    assert name == base64.b85encode(entry_id).decode("ascii")
    assert key.startswith("bm:dsp:g:") and 0 <= int(key.rpartition(":")[2], 16) < 16
