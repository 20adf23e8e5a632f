from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.protocol import privacy, tcf
from cookiematch.protocol.tcf import (
    IdSet,
    PublisherRestriction,
    RestrictionType,
    TCString,
    Undecodable,
    decode_tc_string,
)

from .goldens import cases
from .tcf_builder import (
    HEADER_FIELDS,
    core,
    core_bits,
    field,
    letters,
    publisher_tc_bits,
    restrictions,
    segment,
    to_base64url,
    vendor_bitfield,
    vendor_ranges,
)


def decoded(text: str) -> TCString:
    tc = decode_tc_string(text)
    assert isinstance(tc, TCString), tc
    return tc


def as_json(tc: TCString) -> dict[str, Any]:
    """The decoded value in the golden file's terms."""

    def ids(value: IdSet | None) -> dict[str, Any] | None:
        return None if value is None else {"max_id": value.max_id, "ids": list(value)}

    publisher = tc.publisher_tc
    return {
        **{name: getattr(tc, name) for name in HEADER_FIELDS},
        "special_feature_optins": list(tc.special_feature_optins),
        "purpose_consents": list(tc.purpose_consents),
        "purpose_legitimate_interests": list(tc.purpose_legitimate_interests),
        "vendor_consents": ids(tc.vendor_consents),
        "vendor_legitimate_interests": ids(tc.vendor_legitimate_interests),
        "publisher_restrictions": [
            [entry.purpose_id, int(entry.restriction_type), sorted(entry_ids(entry))]
            for entry in tc.publisher_restrictions
        ],
        "disclosed_vendors": ids(tc.disclosed_vendors),
        "allowed_vendors": ids(tc.allowed_vendors),
        "publisher_tc": None
        if publisher is None
        else {
            "purpose_consents": list(publisher.purpose_consents),
            "purpose_legitimate_interests": list(publisher.purpose_legitimate_interests),
            "num_custom_purposes": publisher.custom_purpose_consents.max_id,
            "custom_purpose_consents": list(publisher.custom_purpose_consents),
            "custom_purpose_legitimate_interests": list(
                publisher.custom_purpose_legitimate_interests
            ),
        },
    }


def entry_ids(entry: PublisherRestriction) -> set[int]:
    return {vendor for start, end in entry.vendor_ranges for vendor in range(start, end + 1)}


@pytest.mark.parametrize("case", cases("tcf.json"))
def test_spec_examples(case: dict[str, Any]) -> None:
    assert as_json(decoded(case["string"])) == case["expected"]


def test_a_hand_made_core_segment() -> None:
    tc = decoded(core())
    assert tc.created == 17_000_000_000 and tc.last_updated == 17_000_864_000
    assert (tc.cmp_id, tc.cmp_version, tc.consent_screen) == (300, 7, 3)
    assert (tc.consent_language, tc.publisher_country_code) == ("FR", "DE")
    assert (tc.vendor_list_version, tc.tcf_policy_version) == (140, 4)
    assert tc.is_service_specific and not tc.use_non_standard_texts
    assert not tc.purpose_one_treatment
    assert list(tc.special_feature_optins) == [1]
    assert list(tc.purpose_consents) == [1, 2, 3, 4, 7]
    assert list(tc.purpose_legitimate_interests) == [2, 7, 10]
    assert tc.vendor_consents == IdSet(10, 0b1010000001)
    assert [v for v in range(0, 12) if tc.vendor_consent(v)] == [1, 3, 10]
    assert tc.vendor_legitimate_interests.max_id == 700
    assert list(tc.vendor_legitimate_interests) == [2, *range(600, 701)]
    assert tc.vendor_legitimate_interest(650) and not tc.vendor_legitimate_interest(599)
    assert tc.publisher_restrictions == ()
    assert (tc.disclosed_vendors, tc.allowed_vendors, tc.publisher_tc) == (None, None, None)


def test_the_flags_and_the_edges_of_each_bitfield() -> None:
    tc = decoded(
        core(
            is_service_specific="0",
            use_non_standard_texts="1",
            purpose_one_treatment="1",
            special_feature_optins=field(0b100000000001, 12),
            purpose_consents=field(1 << 23 | 1, 24),
            purpose_legitimate_interests=field(1 << 23, 24),  # purpose 1: read as encoded
            consent_language=letters("ZA"),
        )
    )
    assert not tc.is_service_specific and tc.use_non_standard_texts and tc.purpose_one_treatment
    assert list(tc.special_feature_optins) == [1, 12]
    assert list(tc.purpose_consents) == [1, 24]
    assert tc.purpose_legitimate_interest(1) and not tc.purpose_legitimate_interest(2)
    assert tc.consent_language == "ZA"


def test_vendor_ranges_single_ids_and_the_16_bit_limit() -> None:
    tc = decoded(
        core(
            vendor_consents=vendor_ranges(65535, [(1, 1), (5, 7), (7, 9), (65535, 65535)]),
            vendor_legitimate_interests=vendor_ranges(0, []),
        )
    )
    assert list(tc.vendor_consents) == [1, 5, 6, 7, 8, 9, 65535]
    assert len(tc.vendor_consents) == 7
    assert tc.vendor_legitimate_interests == IdSet(0, 0)
    assert not tc.vendor_legitimate_interest(1)


def test_a_range_of_one_vendor_encoded_as_a_range() -> None:
    bits = field(3, 16) + "1" + field(1, 12) + "1" + field(3, 16) + field(3, 16)
    assert list(decoded(core(vendor_consents=bits)).vendor_consents) == [3]


def test_publisher_restrictions() -> None:
    tc = decoded(
        core(
            publisher_restrictions=restrictions(
                (2, 0, [(10, 10), (20, 25)]),
                (2, 1, [(21, 21)]),
                (7, 2, []),
                (24, 1, [(1, 65535)]),
            )
        )
    )
    assert tc.publisher_restrictions == (
        PublisherRestriction(2, RestrictionType.NOT_ALLOWED, ((10, 10), (20, 25))),
        PublisherRestriction(2, RestrictionType.REQUIRE_CONSENT, ((21, 21),)),
        PublisherRestriction(7, RestrictionType.REQUIRE_LEGITIMATE_INTEREST, ()),
        PublisherRestriction(24, RestrictionType.REQUIRE_CONSENT, ((1, 65535),)),
    )
    first = tc.publisher_restrictions[0]
    assert 10 in first and 22 in first and 11 not in first and "10" not in first
    assert tc.restriction(2, 10) is RestrictionType.NOT_ALLOWED
    assert tc.restriction(2, 21) is RestrictionType.NOT_ALLOWED  # the lowest type wins
    assert tc.restriction(2, 11) is None
    assert tc.restriction(24, 40_000) is RestrictionType.REQUIRE_CONSENT
    assert tc.restriction(7, 1) is None


def test_optional_segments_in_any_order() -> None:
    publisher = segment(
        3,
        publisher_tc_bits(
            consents=[1, 24],
            legitimate_interests=[2],
            custom=5,
            custom_consents=[1, 5],
            custom_legitimate_interests=[3],
        ),
    )
    disclosed = segment(1, vendor_ranges(900, [(1, 3), (900, 900)]))
    allowed = segment(2, vendor_bitfield(4, [2, 4]))
    tc = decoded(f"{core()}.{publisher}.{allowed}.{disclosed}")
    assert tc.disclosed_vendors is not None and list(tc.disclosed_vendors) == [1, 2, 3, 900]
    assert tc.allowed_vendors == IdSet(4, 0b0101)
    assert tc.publisher_tc is not None
    assert list(tc.publisher_tc.purpose_consents) == [1, 24]
    assert list(tc.publisher_tc.purpose_legitimate_interests) == [2]
    assert tc.publisher_tc.custom_purpose_consents == IdSet(5, 0b10001)
    assert list(tc.publisher_tc.custom_purpose_legitimate_interests) == [3]
    assert decoded(f"{core()}.{disclosed}.{allowed}.{publisher}") == tc


def test_zero_padding_of_any_length_after_the_last_field() -> None:
    assert decoded(core() + "AAAA") == decoded(core())
    assert decoded(core() + "." + segment(3, publisher_tc_bits()) + "A" * 20).publisher_tc


BAD_RANGE = field(1, 12) + "1" + field(9, 16) + field(8, 16)

UNDECODABLE = [
    pytest.param("", "empty", id="empty"),
    pytest.param("C" * (tcf.MAX_TC_STRING_LENGTH + 1), "longer than 2048", id="too-long"),
    pytest.param(core()[:-1] + "+", "not base64url", id="plus"),
    pytest.param(core()[:-1] + "=", "not base64url", id="padding"),
    pytest.param(core() + "." + "I" * 3 + " ", "segment 2 is empty or not base64url", id="space"),
    pytest.param(core() + ".", "segment 2 is empty", id="trailing-dot"),
    pytest.param("." + core(), "core segment is empty", id="leading-dot"),
    pytest.param(core(version=field(1, 6)), "version 1 is not 2", id="version-1"),
    pytest.param(core(version=field(3, 6)), "version 3 is not 2", id="version-3"),
    pytest.param("C", "core segment ends inside Created", id="one-character"),
    pytest.param(
        to_base64url(core_bits()[:220]), "ends inside VendorConsents MaxVendorId", id="truncated"
    ),
    pytest.param(
        core(consent_language=field(26, 6) + field(0, 6)),
        "ConsentLanguage is not two letters",
        id="language-letter-26",
    ),
    pytest.param(
        core(publisher_country_code=field(0, 6) + field(63, 6)),
        "PublisherCC is not two letters",
        id="country-letter-63",
    ),
    pytest.param(
        core(vendor_consents=field(100, 16) + "0" + "1" * 50, vendor_legitimate_interests=""),
        "ends inside VendorConsents BitField",
        id="short-bitfield",
    ),
    pytest.param(
        core(vendor_consents=field(10, 16) + "1" + BAD_RANGE),
        "VendorConsents has the range 9-8, which ends before it starts",
        id="range-backwards",
    ),
    pytest.param(
        core(vendor_legitimate_interests=vendor_ranges(10, [(5, 11)])),
        "VendorLegitimateInterests names vendor 11, over its MaxVendorId 10",
        id="range-over-max",
    ),
    pytest.param(
        core(vendor_consents=vendor_ranges(10, [(11, 11)])),
        "names vendor 11, over its MaxVendorId 10",
        id="single-over-max",
    ),
    pytest.param(
        core(vendor_consents=vendor_ranges(10, [(0, 3)])),
        "VendorConsents names vendor 0",
        id="vendor-0",
    ),
    pytest.param(
        core(publisher_restrictions=restrictions((1, 3, [(1, 1)]))),
        "undefined RestrictionType 3",
        id="restriction-type-3",
    ),
    pytest.param(
        core(publisher_restrictions=restrictions((0, 0, [(1, 1)]))),
        "names purpose 0, not 1-24",
        id="restriction-purpose-0",
    ),
    pytest.param(
        core(publisher_restrictions=restrictions((25, 0, [(1, 1)]))),
        "names purpose 25, not 1-24",
        id="restriction-purpose-25",
    ),
    pytest.param(
        core(publisher_restrictions=field(1, 12) + field(2, 6) + field(0, 2) + BAD_RANGE),
        "PubRestrictionEntry has the range 9-8",
        id="restriction-range-backwards",
    ),
    pytest.param(
        core(publisher_restrictions=restrictions((1, 0, [(0, 0)]))),
        "PubRestrictionEntry names vendor 0",
        id="restriction-vendor-0",
    ),
    pytest.param(
        core(publisher_restrictions=field(2, 12) + field(1, 6) + "00" + field(0, 12)),
        "the core segment ends inside PurposeId",
        id="restrictions-missing",
    ),
    pytest.param(
        core() + "B", "the core segment has non-zero bits after its last field", id="core-garbage"
    ),
    pytest.param(
        to_base64url(core_bits() + "000001"), "non-zero bits after its last field", id="one-bit"
    ),
    pytest.param(
        core() + "." + segment(0, vendor_bitfield(0, [])),
        "segment 2 has the undefined SegmentType 0",
        id="second-core",
    ),
    pytest.param(core() + "." + segment(4, ""), "undefined SegmentType 4", id="segment-type-4"),
    pytest.param(core() + "." + segment(7, ""), "undefined SegmentType 7", id="segment-type-7"),
    pytest.param(
        core()
        + "."
        + segment(1, vendor_bitfield(2, [1]))
        + "."
        + segment(1, vendor_bitfield(0, [])),
        "the DisclosedVendors segment appears twice",
        id="disclosed-twice",
    ),
    pytest.param(
        core() + "." + segment(1, vendor_bitfield(2, [1]) + "1"),
        "the DisclosedVendors segment has non-zero bits after its last field",
        id="segment-garbage",
    ),
    pytest.param(
        core() + "." + segment(2, field(20, 16)),
        "the AllowedVendors segment ends inside AllowedVendors BitField",
        id="allowed-truncated",
    ),
    pytest.param(
        core() + "." + segment(3, publisher_tc_bits(custom=5)[:-3]),
        "the PublisherTC segment ends inside CustomPurposesLITransparency",
        id="publisher-tc-truncated",
    ),
    pytest.param(
        core() + "." + segment(3, field(0, 48) + field(63, 6) + "1" * 120),
        "ends inside CustomPurposesLITransparency",
        id="custom-purposes-truncated",
    ),
]


@pytest.mark.parametrize(("text", "reason"), UNDECODABLE)
def test_undecodable(text: str, reason: str) -> None:
    result = decode_tc_string(text)
    assert isinstance(result, Undecodable), result
    assert reason in result.reason


def test_not_a_string_is_undecodable() -> None:
    assert decode_tc_string(None) == Undecodable("not a string")  # type: ignore[arg-type]


def test_the_length_limit_is_the_gdpr_consent_parameters() -> None:
    assert tcf.MAX_TC_STRING_LENGTH == privacy.MAX_CONSENT_LENGTH
    at_limit = core() + "A" * (tcf.MAX_TC_STRING_LENGTH - len(core()))
    assert len(at_limit) == tcf.MAX_TC_STRING_LENGTH
    assert decoded(at_limit) == decoded(core())


def test_the_same_string_decodes_once_to_one_immutable_value() -> None:
    text = core()
    tc = decoded(text)
    assert decode_tc_string("".join(text)) is tc
    with pytest.raises(dataclasses.FrozenInstanceError):
        tc.cmp_id = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        tc.vendor_consents.bits = 0  # type: ignore[misc]


def test_id_sets() -> None:
    ids = IdSet(5, 0b10011)
    assert list(ids) == [1, 4, 5] and len(ids) == 3
    assert 1 in ids and 4 in ids and 2 not in ids
    assert 0 not in ids and 6 not in ids and -1 not in ids and "1" not in ids and None not in ids
    assert repr(ids) == "IdSet(max_id=5, ids=[1, 4, 5])"
    assert list(IdSet(0, 0)) == [] and not IdSet(0, 0)


BITS = st.lists(st.booleans(), max_size=4000).map(lambda bits: "".join("01"[b] for b in bits))
HEADER_BITS = 213  # Version to PublisherCC: fixed widths


def assert_consistent(result: TCString | Undecodable) -> None:
    """Whatever decodes keeps the format's invariants."""
    if isinstance(result, Undecodable):
        return
    for ids in (result.vendor_consents, result.vendor_legitimate_interests):
        assert all(1 <= vendor <= ids.max_id for vendor in ids)
        assert ids.bits < 1 << ids.max_id
    for entry in result.publisher_restrictions:
        assert 1 <= entry.purpose_id <= 24
        assert all(1 <= start <= end for start, end in entry.vendor_ranges)


@given(BITS)
def test_a_valid_header_then_random_bits_never_raises(tail: str) -> None:
    assert_consistent(decode_tc_string(to_base64url(core_bits()[:HEADER_BITS] + tail)))


@given(st.integers(0, 7), BITS)
def test_a_valid_core_then_a_random_segment_never_raises(kind: int, tail: str) -> None:
    result = decode_tc_string(core() + "." + segment(kind, tail))
    assert_consistent(result)
    if kind not in (1, 2, 3):
        assert isinstance(result, Undecodable) and "undefined SegmentType" in result.reason
