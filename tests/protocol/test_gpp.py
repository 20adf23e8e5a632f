"""GPP strings: the spec's examples, the IAB's own sample strings, every way to be malformed."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.protocol.gpp import (
    GppString,
    TcfEuV2Section,
    UndecodedSection,
    UsPrivacySection,
    applicable,
    decode_gpp,
    parse_gpp_sid,
)
from cookiematch.protocol.gpp_bits import BASE64URL, BitReader, MalformedGpp
from cookiematch.protocol.gpp_us import UsOptOuts, UsSection
from cookiematch.protocol.privacy import MAX_GPP_LENGTH
from cookiematch.protocol.undecodable import Undecodable
from cookiematch.protocol.usprivacy import UsPrivacy

TC = "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"  # the spec's TCF EU v2 sample payload
# The IAB's sample strings (iabgpp.com): US National v1, then with every state from 8 to 12.
USNAT_V1 = "BVVqAAEABCA"
ALL_US = "DBABrGA~BVVqAAEABCA~BVoYYZoI~BVoYYYI~BVoYYQg~BVaGGGCA~BVoYYYQg"


def decoded(text: str) -> GppString:
    gpp = decode_gpp(text)
    assert isinstance(gpp, GppString), gpp
    return gpp


def reader(bits: str) -> BitReader:
    """A reader over ``bits``, padded with zeros to whole base64url characters."""
    bits += "0" * (-len(bits) % 6)
    return BitReader("".join(BASE64URL[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6)))


# -- the Consent String Specification's examples ------------------------------------------


@pytest.mark.parametrize(
    ("text", "section_ids"),
    [
        (f"DBABM~{TC}", (2,)),  # header example 1: EU TCF v2
        (f"DBACNY~{TC}~1YNN", (2, 6)),  # example 2: EU TCF v2 and US Privacy
        (f"DBABjw~{TC}~1YNN", (5, 6)),  # example 3: a group, Canadian TCF (5) to US Privacy
        (f"DBACNYA~{TC}~1YNN", (2, 6)),  # the URL example: padded to a byte, then a character
    ],
)
def test_spec_examples(text: str, section_ids: tuple[int, ...]) -> None:
    gpp = decoded(text)
    assert gpp.version == 1
    assert gpp.section_ids == section_ids
    assert tuple(gpp.sections) == section_ids


def test_spec_example_sections() -> None:
    gpp = decoded(f"DBABjw~{TC}~1YNN")
    assert gpp.sections[5] == UndecodedSection(5, TC)  # present, not decoded
    assert gpp.sections[6] == UsPrivacySection(UsPrivacy(True, False, False))
    assert gpp.tcf_eu_v2 is None
    assert gpp.us_privacy == UsPrivacy(True, False, False)
    both = decoded(f"DBACNY~{TC}~1YNN")
    assert both.tcf_eu_v2 == TC
    assert both.sections[2] == TcfEuV2Section(TC)


@pytest.mark.parametrize(
    ("code", "value"),
    [("11", 1), ("011", 2), ("0011", 3), ("1011", 4), ("00011", 5), ("10011", 6), ("01011", 7)],
)
def test_fibonacci_table(code: str, value: int) -> None:
    assert reader(code).fibonacci() == value


def test_fibonacci_range_example() -> None:
    # int(12) = 2; single, ID 3; group, start at offset 2 (5), end at offset 3 (8)
    assert reader("0000000000100001110110011").fibonacci_range(8) == (3, 5, 6, 7, 8)


def test_range_larger_than_allowed_is_refused_before_expansion() -> None:
    # one group from 1 to 1 + F(20)-ish: far more IDs than the string has sections
    group = "000000000001111" + "0" * 18 + "11"
    with pytest.raises(MalformedGpp):
        reader(group).fibonacci_range(3)


# -- the US sections ----------------------------------------------------------------------


def test_usnat_v1_with_and_without_gpc() -> None:
    expected = UsSection(
        section_id=7,
        version=1,
        sharing_notice=1,
        sale_opt_out_notice=1,
        sharing_opt_out_notice=1,
        targeted_advertising_opt_out_notice=1,
        sensitive_data_processing_opt_out_notice=1,
        sensitive_data_limit_use_notice=1,
        sale_opt_out=2,
        sharing_opt_out=2,
        targeted_advertising_opt_out=2,
        sensitive_data_processing=(0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0),
        known_child_sensitive_data_consents=(0, 0),
        personal_data_consents=1,
        mspa_covered_transaction=0,
        mspa_opt_out_option_mode=0,
        mspa_service_provider_mode=2,
    )
    assert decoded(f"DBABLA~{USNAT_V1}").sections[7] == expected
    assert decoded(f"DBABLA~{USNAT_V1}.QA").sections[7] == dataclasses.replace(expected, gpc=False)
    assert decoded(f"DBABLA~{USNAT_V1}.YA").sections[7] == dataclasses.replace(expected, gpc=True)
    assert decoded(f"DBABLA~{USNAT_V1}.Y").sections[7].opt_outs == UsOptOuts(
        section_id=7,
        sale_opt_out=2,
        sale_opt_out_notice=1,
        sharing_opt_out=2,
        sharing_opt_out_notice=1,
        targeted_advertising_opt_out=2,
        targeted_advertising_opt_out_notice=1,
        gpc=True,
    )


def test_usnat_v2() -> None:
    section = decoded("DBABLA~CphJmWQCkWpk").sections[7]  # encoded by @iabgpp/cmpapi 3.2.0
    assert isinstance(section, UsSection)
    assert section.version == 2
    assert (section.sharing_notice, section.sale_opt_out_notice) == (2, 2)
    assert (section.sharing_opt_out_notice, section.targeted_advertising_opt_out_notice) == (1, 2)
    assert section.sensitive_data_processing_opt_out_notice == 0
    assert section.sensitive_data_limit_use_notice == 1
    assert (section.sale_opt_out, section.sharing_opt_out) == (0, 2)
    assert section.targeted_advertising_opt_out == 1
    assert section.sensitive_data_processing == (2, 1, 2, 1, 1, 2, 1, 0, 0, 0, 0, 2, 2, 1, 0, 1)
    assert section.known_child_sensitive_data_consents == (1, 2, 2)
    assert section.personal_data_consents == 2
    assert section.mspa_covered_transaction == 1
    assert section.mspa_opt_out_option_mode == 2
    assert section.mspa_service_provider_mode == 1
    assert section.gpc is None


@pytest.mark.parametrize(
    ("section_id", "name", "sale", "sharing", "targeted", "sensitive", "known_child"),
    [
        (7, "usnat", 2, 2, 2, (0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0), (0, 0)),
        (8, "usca", 2, 2, None, (0, 1, 2, 0, 1, 2, 0, 1, 2), (1, 2)),
        (9, "usva", 2, None, 2, (0, 1, 2, 0, 1, 2, 0, 1), (2,)),
        (10, "usco", 2, None, 2, (0, 1, 2, 0, 1, 2, 0), (1,)),
        (11, "usut", 2, None, 2, (0, 1, 2, 0, 1, 2, 0, 1), (2,)),
        (12, "usct", 2, None, 2, (0, 1, 2, 0, 1, 2, 0, 1), (2, 0, 1)),
    ],
)
def test_every_us_section(
    section_id: int,
    name: str,
    sale: int,
    sharing: int | None,
    targeted: int | None,
    sensitive: tuple[int, ...],
    known_child: tuple[int, ...],
) -> None:
    gpp = decoded(ALL_US)
    assert gpp.section_ids == (7, 8, 9, 10, 11, 12)  # one Fibonacci group
    section = gpp.sections[section_id]
    assert isinstance(section, UsSection)
    assert section.name == name
    assert section.version == 1
    assert (section.sale_opt_out, section.sharing_opt_out) == (sale, sharing)
    assert section.targeted_advertising_opt_out == targeted
    assert section.sensitive_data_processing == sensitive
    assert section.known_child_sensitive_data_consents == known_child
    assert section.mspa_service_provider_mode == 2
    assert section.opt_outs.sale_opt_out_notice == 1


# -- what does not decode -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "~",
        "DBABM",  # a section ID and no section
        "DBABM~",  # an empty section
        f"DBACNY~{TC}",  # two IDs, one section
        f"DBABM~{TC}~1YNN",  # one ID, two sections
        f"ABABM~{TC}",  # header type 0
        f"DCABM~{TC}",  # GPP version 2
        f"DBABN~{TC}",  # a padding bit set
        f"DBABMAA~{TC}",  # more than the padding after the header
        f"DB.ABM~{TC}",  # a dot in the header
        f"DBABM~{TC} ",  # a character outside the alphabet
        "DBABTA~1ynn",  # US Privacy in lower case
        "DBABTA~1Y-N",  # opt-out unknown while the CCPA applies
        "DBABTA~2YNN",
        "DBABLA~DSJgmkoZJSA.YA",  # US National version 3
        "DBABLA~BVVqAAEABCA.QA.QA",  # two subsections
        "DBABLA~BVVqAAEABCA.AA",  # a subsection that is not the GPC one
        "DBABLA~BVVqAAEABCA.",  # an empty subsection
        "DBABLA~BVVqAAEABCAAA",  # bits after the core segment's padding
        "DBABLA~BVVqAA",  # truncated core segment
        "DBABLA~B_VqAAEABCA",  # a 2-bit field holding 3
        "DBABRg~BVoYYYI.QA",  # Virginia has no GPC subsection
        "D" * (MAX_GPP_LENGTH + 1),
    ],
)
def test_malformed_strings_are_undecodable(text: str) -> None:
    result = decode_gpp(text)
    assert isinstance(result, Undecodable)
    assert result.reason


def test_a_long_fibonacci_code_is_refused() -> None:
    with pytest.raises(MalformedGpp):
        reader("0" * 40 + "11").fibonacci()


# -- which sections apply -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpp_sid", "expected"),
    [
        ((7,), (7,)),
        ((8, 7), (7, 8)),
        ((6,), ()),  # the string has no section 6
        ((-1,), ()),  # "no section applies"
        ((0,), ()),
        ((), ()),  # no gpp_sid: the string alone does not say
        ([12, 12], (12,)),
    ],
)
def test_applicable(gpp_sid: tuple[int, ...], expected: tuple[int, ...]) -> None:
    sections = applicable(decoded(ALL_US), gpp_sid)
    assert tuple(section.section_id for section in sections) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", ()), ("2", (2,)), ("2,6", (2, 6)), ("-1", (-1,)), ("7,8,9", (7, 8, 9))],
)
def test_parse_gpp_sid(text: str, expected: tuple[int, ...]) -> None:
    assert parse_gpp_sid(text) == expected


@pytest.mark.parametrize("text", ["2,", ",2", "a", "2;6", " 2", "12345", ",".join(["1"] * 33)])
def test_parse_gpp_sid_malformed(text: str) -> None:
    assert isinstance(parse_gpp_sid(text), Undecodable)


def test_opt_outs_of_applicable_sections() -> None:
    gpp = decoded(f"DBABzw~1NYN~{USNAT_V1}.YA")  # US Privacy and US National: a group
    summaries = [section.opt_outs for section in applicable(gpp, (6, 7))]
    assert [summary.section_id for summary in summaries if summary] == [6, 7]
    us_privacy = gpp.sections[6].opt_outs
    assert us_privacy is not None
    assert (us_privacy.sale_opt_out, us_privacy.sale_opt_out_notice) == (1, 2)
    assert us_privacy.sharing_opt_out is None
    assert decoded(f"DBABM~{TC}").sections[2].opt_outs is None


# -- values, cache ------------------------------------------------------------------------


def test_decoded_values_are_immutable_and_cached() -> None:
    gpp = decoded(ALL_US)
    assert decode_gpp(ALL_US) is gpp
    with pytest.raises(dataclasses.FrozenInstanceError):
        gpp.version = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        gpp.sections[7] = gpp.sections[8]  # type: ignore[index]


# -- garbage never raises -----------------------------------------------------------------

GPP_CHARS = BASE64URL + ".~"
SAMPLES = [f"DBACNY~{TC}~1YNN", f"DBABLA~{USNAT_V1}.YA", ALL_US, "DBABLA~CphJmWQCkWpk"]


@given(st.text(max_size=300))
def test_any_text_decodes_or_is_undecodable(text: str) -> None:
    assert isinstance(decode_gpp(text), GppString | Undecodable)


@given(st.text(alphabet=GPP_CHARS, max_size=300))
def test_any_gpp_characters_decode_or_are_undecodable(text: str) -> None:
    assert isinstance(decode_gpp(text), GppString | Undecodable)


@given(st.text(alphabet=GPP_CHARS, max_size=60))
def test_any_header_with_sections(sections: str) -> None:
    assert isinstance(decode_gpp("DBAB" + sections), GppString | Undecodable)


@given(st.sampled_from(SAMPLES), st.data())
def test_changed_samples_never_raise(sample: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(sample) - 1))
    char = data.draw(st.sampled_from(GPP_CHARS + " %"))
    assert isinstance(
        decode_gpp(sample[:position] + char + sample[position + 1 :]), GppString | Undecodable
    )
    assert isinstance(
        decode_gpp(sample[:position] + sample[position + 1 :]), GppString | Undecodable
    )


@given(st.sampled_from(SAMPLES), st.data())
def test_truncated_samples_lose_nothing_silently(sample: str, data: st.DataObject) -> None:
    """A cut decodes only where it removed padding, part of the text kept as text, or a whole
    GPC subsection (a string without one is as valid)."""
    cut = sample[: data.draw(st.integers(0, len(sample) - 1))]
    result = decode_gpp(cut)
    if isinstance(result, Undecodable):
        return
    whole = decoded(sample)
    assert result.section_ids == whole.section_ids
    for section_id, section in result.sections.items():
        if isinstance(section, TcfEuV2Section | UndecodedSection):
            original = whole.sections[section_id]
            assert isinstance(original, TcfEuV2Section | UndecodedSection)
            assert original.payload.startswith(section.payload)
        elif isinstance(section, UsSection) and section.gpc is None:
            assert section == dataclasses.replace(whole.sections[section_id], gpc=None)
        else:
            assert section == whole.sections[section_id]
