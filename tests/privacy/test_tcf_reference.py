"""Differential tests: TC strings encoded by the IAB's own library, decoded by ours.

``tests/reference/tcf.mjs`` (node, ``@iabtcf/core``) encodes random TC strings and prints
what it put in; every field must decode alike. Then garbage: random base64url, every
truncation of the reference strings, and their version bits flipped never raise, and never
decode to anything but the original's values or :class:`Undecodable`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.protocol.tcf import (
    IdSet,
    TCString,
    Undecodable,
    decode_tc_string,
)
from protocol.tcf_builder import HEADER_FIELDS

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
CASES = 1000
SEED = 20240601
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

Case = dict[str, Any]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: the TCF differential tests must run in CI", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not on PATH")
    if not (REFERENCE / "node_modules" / "@iabtcf" / "core").is_dir():
        _unavailable("@iabtcf/core is not installed (make reference-encoders)")
    run = subprocess.run(
        [str(node), "tcf.mjs", str(CASES), str(SEED)],
        cwd=REFERENCE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    found = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(found) == CASES
    return found


def decoded(case: Case) -> TCString:
    tc = decode_tc_string(case["string"])
    assert isinstance(tc, TCString), (case["string"], tc)
    return tc


def vendor_set(ids: IdSet | None) -> dict[str, Any] | None:
    return None if ids is None else {"max_id": ids.max_id, "ids": list(ids)}


def expected_set(encoded: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if encoded is None else {"max_id": encoded["max_id"], "ids": encoded["ids"]}


def test_the_corpus_covers_both_encodings_and_every_segment(cases: list[Case]) -> None:
    encodings = Counter(
        case[key]["encoding"]
        for case in cases
        for key in ("vendor_consents", "vendor_legitimate_interests", "disclosed_vendors")
        if case[key] is not None
    )
    assert encodings["range"] >= 200 and encodings["bitfield"] >= 200
    segments = Counter(segment for case in cases for segment in case["segments"])
    assert (
        min(segments[name] for name in ("vendorsDisclosed", "vendorsAllowed", "publisherTC")) > 200
    )
    assert sum(len(case["publisher_restrictions"]) for case in cases) > 1000
    assert (
        sum(
            1
            for case in cases
            if case["publisher_tc"] and case["publisher_tc"]["num_custom_purposes"]
        )
        > 50
    )


def test_header_fields(cases: list[Case]) -> None:
    fields = HEADER_FIELDS
    for case in cases:
        tc = decoded(case)
        assert {name: getattr(tc, name) for name in fields} == {name: case[name] for name in fields}


def test_purposes_and_special_features(cases: list[Case]) -> None:
    for case in cases:
        tc = decoded(case)
        assert list(tc.special_feature_optins) == case["special_feature_optins"]
        assert list(tc.purpose_consents) == case["purpose_consents"]
        assert list(tc.purpose_legitimate_interests) == case["purpose_legitimate_interests"]
        for purpose in range(1, 25):
            assert tc.purpose_consent(purpose) is (purpose in case["purpose_consents"])
            assert tc.purpose_legitimate_interest(purpose) is (
                purpose in case["purpose_legitimate_interests"]
            )
        for feature in range(1, 13):
            assert tc.special_feature_optin(feature) is (feature in case["special_feature_optins"])


def test_vendor_consents_and_legitimate_interests(cases: list[Case]) -> None:
    for case in cases:
        tc = decoded(case)
        consents, interests = case["vendor_consents"], case["vendor_legitimate_interests"]
        assert vendor_set(tc.vendor_consents) == expected_set(consents)
        assert vendor_set(tc.vendor_legitimate_interests) == expected_set(interests)
        consenting, interested = set(consents["ids"]), set(interests["ids"])
        edges = {0, consents["max_id"] + 1, interests["max_id"] + 1, 65536}
        for vendor in edges | {n + step for n in consenting | interested for step in (-1, 0, 1)}:
            assert tc.vendor_consent(vendor) is (vendor in consenting)
            assert tc.vendor_legitimate_interest(vendor) is (vendor in interested)


def test_publisher_restrictions(cases: list[Case]) -> None:
    """Compared on the GVL's vendors: a range may span IDs the GVL does not have (spec)."""
    for case in cases:
        tc = decoded(case)
        listed = set(case["gvl_vendor_ids"])
        found = {
            (entry.purpose_id, int(entry.restriction_type)): {
                vendor for start, end in entry.vendor_ranges for vendor in range(start, end + 1)
            }
            for entry in tc.publisher_restrictions
        }
        assert len(found) == len(tc.publisher_restrictions)  # one entry per purpose and type
        expected = {
            (entry["purpose_id"], entry["restriction_type"]): set(entry["vendors"])
            for entry in case["publisher_restrictions"]
        }
        assert {key: vendors & listed for key, vendors in found.items()} == expected
        for key, vendors in found.items():
            assert vendors - expected[key] <= vendors - listed  # only gaps in the GVL
            assert min(vendors) == min(expected[key]) and max(vendors) == max(expected[key])
        for (purpose, _kind), vendors in expected.items():
            for vendor in vendors:
                kinds = [
                    k for (p, k), named in expected.items() if p == purpose and vendor in named
                ]
                assert tc.restriction(purpose, vendor) == min(kinds)


def test_disclosed_and_allowed_vendors(cases: list[Case]) -> None:
    for case in cases:
        tc = decoded(case)
        assert vendor_set(tc.disclosed_vendors) == expected_set(case["disclosed_vendors"])
        assert vendor_set(tc.allowed_vendors) == expected_set(case["allowed_vendors"])


def test_publisher_tc(cases: list[Case]) -> None:
    for case in cases:
        tc, expected = decoded(case), case["publisher_tc"]
        if expected is None:
            assert tc.publisher_tc is None
            continue
        publisher = tc.publisher_tc
        assert publisher is not None
        assert list(publisher.purpose_consents) == expected["purpose_consents"]
        assert (
            list(publisher.purpose_legitimate_interests) == expected["purpose_legitimate_interests"]
        )
        custom = expected["num_custom_purposes"]
        assert publisher.custom_purpose_consents.max_id == custom
        assert publisher.custom_purpose_legitimate_interests.max_id == custom
        assert list(publisher.custom_purpose_consents) == expected["custom_purpose_consents"]
        assert (
            list(publisher.custom_purpose_legitimate_interests)
            == expected["custom_purpose_legitimate_interests"]
        )


def test_every_truncation_is_undecodable_or_drops_only_padding(cases: list[Case]) -> None:
    for case in cases[:150]:
        text, full = case["string"], decoded(case)
        for length in range(len(text)):
            prefix = text[:length]
            result = decode_tc_string(prefix)
            if isinstance(result, Undecodable):
                continue
            # what is left must be whole segments, each one whole but for zero padding
            kept = prefix.count(".") + 1
            assert result == _only_segments(full, case["segments"][: kept - 1]), prefix


def _only_segments(tc: TCString, segments: list[str]) -> TCString:
    return replace(
        tc,
        disclosed_vendors=tc.disclosed_vendors if "vendorsDisclosed" in segments else None,
        allowed_vendors=tc.allowed_vendors if "vendorsAllowed" in segments else None,
        publisher_tc=tc.publisher_tc if "publisherTC" in segments else None,
    )


def test_a_flipped_version_bit_is_undecodable(cases: list[Case]) -> None:
    for case in cases[:200]:
        text = case["string"]
        first = BASE64URL.index(text[0])
        for bit in range(6):
            flipped = BASE64URL[first ^ (1 << bit)] + text[1:]
            result = decode_tc_string(flipped)
            assert isinstance(result, Undecodable) and "version" in result.reason, flipped


@given(st.text(alphabet=BASE64URL + ".", max_size=400))
def test_random_base64url_never_raises(text: str) -> None:
    assert isinstance(decode_tc_string(text), TCString | Undecodable)


@given(st.text(alphabet=BASE64URL, max_size=300), st.text(alphabet=BASE64URL + ".", max_size=60))
def test_random_version_2_strings_never_raise(core: str, rest: str) -> None:
    # "C" is the version field's 2: the decoder reads on into random fields
    assert isinstance(decode_tc_string("C" + core + rest), TCString | Undecodable)
