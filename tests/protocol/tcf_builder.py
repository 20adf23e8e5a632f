"""Hand-made TC strings: fields written as bits, then base64url, for the table tests.

``core(**parts)`` is a valid core segment whose named parts (each a bit string) can be
replaced, e.g. ``core(vendor_consents=vendor_ranges(10, [(5, 3)]))`` for a bad range.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

HEADER_FIELDS = (
    "created",
    "last_updated",
    "cmp_id",
    "cmp_version",
    "consent_screen",
    "consent_language",
    "vendor_list_version",
    "tcf_policy_version",
    "is_service_specific",
    "use_non_standard_texts",
    "purpose_one_treatment",
    "publisher_country_code",
)
"""The TC string's single-valued fields, named as ``TCString`` names them."""

BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def field(value: int, width: int) -> str:
    return format(value, f"0{width}b") if width else ""


def letters(code: str) -> str:
    return "".join(field(ord(letter) - 65, 6) for letter in code)


def id_bits(ids: Iterable[int], width: int) -> str:
    """A fixed bitfield: the first bit stands for ID 1."""
    chosen = set(ids)
    return "".join("1" if i in chosen else "0" for i in range(1, width + 1))


def range_entries(ranges: Iterable[tuple[int, int]]) -> str:
    entries = list(ranges)
    bits = [field(len(entries), 12)]
    for start, end in entries:
        bits.append(
            "0" + field(start, 16) if start == end else "1" + field(start, 16) + field(end, 16)
        )
    return "".join(bits)


def vendor_bitfield(max_id: int, ids: Iterable[int]) -> str:
    return field(max_id, 16) + "0" + id_bits(ids, max_id)


def vendor_ranges(max_id: int, ranges: Iterable[tuple[int, int]]) -> str:
    return field(max_id, 16) + "1" + range_entries(ranges)


def restrictions(*entries: tuple[int, int, list[tuple[int, int]]]) -> str:
    """NumPubRestrictions, then each (purpose id, restriction type, vendor ranges)."""
    bits = [field(len(entries), 12)]
    for purpose, kind, ranges in entries:
        bits.append(field(purpose, 6) + field(kind, 2) + range_entries(ranges))
    return "".join(bits)


CORE_PARTS = {
    "version": field(2, 6),
    "created": field(17_000_000_000, 36),
    "last_updated": field(17_000_864_000, 36),
    "cmp_id": field(300, 12),
    "cmp_version": field(7, 12),
    "consent_screen": field(3, 6),
    "consent_language": letters("FR"),
    "vendor_list_version": field(140, 12),
    "tcf_policy_version": field(4, 6),
    "is_service_specific": "1",
    "use_non_standard_texts": "0",
    "special_feature_optins": id_bits([1], 12),
    "purpose_consents": id_bits([1, 2, 3, 4, 7], 24),
    "purpose_legitimate_interests": id_bits([2, 7, 10], 24),
    "purpose_one_treatment": "0",
    "publisher_country_code": letters("DE"),
    "vendor_consents": vendor_bitfield(10, [1, 3, 10]),
    "vendor_legitimate_interests": vendor_ranges(700, [(2, 2), (600, 700)]),
    "publisher_restrictions": restrictions(),
}


def core_bits(**parts: str) -> str:
    unknown = set(parts) - set(CORE_PARTS)
    assert not unknown, unknown
    return "".join(parts.get(name, bits) for name, bits in CORE_PARTS.items())


def core(**parts: str) -> str:
    return to_base64url(core_bits(**parts))


def segment(kind: int, bits: str) -> str:
    return to_base64url(field(kind, 3) + bits)


def publisher_tc_bits(
    consents: Iterable[int] = (),
    legitimate_interests: Iterable[int] = (),
    custom_consents: Iterable[int] = (),
    custom_legitimate_interests: Iterable[int] = (),
    custom: int = 0,
) -> str:
    return (
        id_bits(consents, 24)
        + id_bits(legitimate_interests, 24)
        + field(custom, 6)
        + id_bits(custom_consents, custom)
        + id_bits(custom_legitimate_interests, custom)
    )


def to_base64url(bits: str) -> str:
    """Six bits a character, the last one filled up with zeros (no padding characters)."""
    bits += "0" * (-len(bits) % 6)
    return "".join(BASE64URL[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


def today() -> str:
    """The ``created``/``last_updated`` field of a TC string made today (deciseconds, rounded
    to the day): a stored consent counts 13 months from its LastUpdated."""
    return field(int(time.time()) // 86400 * 864_000, 36)


def core_of_today(**parts: str) -> str:
    """``core(**parts)`` dated today."""
    return core(**{"created": today(), "last_updated": today(), **parts})
