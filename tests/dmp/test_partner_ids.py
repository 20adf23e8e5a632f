"""Signed and encrypted partner IDs: genuine ones open, forged, stale or foreign ones do not."""

from __future__ import annotations

import dataclasses

import pytest

from cookiematch.dmp.model import IdFormat
from cookiematch.dmp.partner_ids import PartnerIdReader, seal

from .helpers import KEY, NOW, partner

SIGNED = partner("email", id_format=IdFormat.SIGNED, id_key=KEY, id_max_age_seconds=600)
ENCRYPTED = partner("dsp", id_format=IdFormat.ENCRYPTED, id_key=KEY, id_max_age_seconds=600)
PLAIN = partner("analytics")


@pytest.mark.parametrize("p", [SIGNED, ENCRYPTED, PLAIN], ids=lambda p: p.id)
def test_genuine_ids_open(p: object) -> None:
    reader = PartnerIdReader(p)  # type: ignore[arg-type]
    for uid in ("u-1", "a.b.c", "x" * 256):
        assert reader.open(seal(p, uid, NOW), NOW + 5) == uid  # type: ignore[arg-type]


def test_signed_format_is_documented() -> None:
    value = seal(SIGNED, "user42", NOW)
    uid, ts, sig = value.split(".")
    assert (uid, ts) == ("user42", str(int(NOW))) and len(sig) == 43


@pytest.mark.parametrize("p", [SIGNED, ENCRYPTED], ids=lambda p: p.id)
def test_forged_stale_and_foreign_ids_are_refused(p: object) -> None:
    reader = PartnerIdReader(p)  # type: ignore[arg-type]
    genuine = seal(p, "user42", NOW)  # type: ignore[arg-type]
    other_key = dataclasses.replace(p, id_key=bytes(32))  # type: ignore[type-var]
    other_partner = dataclasses.replace(p, id="other")  # type: ignore[type-var]
    refused = [
        "user42",
        "",
        genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB"),
        seal(other_key, "user42", NOW),
        seal(other_partner, "user42", NOW),
        "é" * 10,
        "user42.1700000000.",
        "!!!!",
    ]
    for value in refused:
        assert reader.open(value, NOW) is None, value
    assert reader.open(genuine, NOW + 601) is None  # stale: replay refused
    assert reader.open(genuine, NOW - 301) is None  # from the future beyond the skew


def test_signed_id_cannot_be_moved_to_another_uid() -> None:
    value = seal(SIGNED, "alice", NOW)
    _, ts, sig = value.split(".")
    assert PartnerIdReader(SIGNED).open(f"mallory.{ts}.{sig}", NOW) is None


def test_plain_ids_must_be_printable() -> None:
    reader = PartnerIdReader(PLAIN)
    assert reader.open("has space", NOW) is None
    assert reader.open("x" * 257, NOW) is None
    assert reader.open("ok~id", NOW) == "ok~id"


def test_a_keyless_signed_partner_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="id_key"):
        PartnerIdReader(partner("p", id_format=IdFormat.SIGNED))
