"""IAB TCF v2.2 TC strings (the ``gdpr_consent`` value), decoded strictly into immutable values.

    decode_tc_string(text) -> TCString | Undecodable     never raises; cached per string

A TC string is a core segment, then optional segments after ``.``, each named by its first
three bits: 1 DisclosedVendors, 2 AllowedVendors (dropped from the spec in v2.2, still read),
3 PublisherTC. Anything else, a segment given twice, a field past the end, a vendor range that
ends before it starts or past its MaxVendorId, a restriction of type 3 or on no purpose
(1-24), a non-zero bit after a segment's last field: each is :class:`Undecodable`, with the
reason, which the caller treats as no consent. Field names follow the IAB's "Consent string
and vendor list formats v2"; the choices where it leaves room are in docs/privacy.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from cookiematch.protocol.tcf_bits import BitReader, Malformed
from cookiematch.protocol.undecodable import Undecodable

MAX_TC_STRING_LENGTH = 2048  # the gdpr_consent limit of protocol.privacy (a test keeps them equal)
TC_STRING_CACHE_SIZE = 512  # at most ~80 KiB a value (docs/privacy.md), ~1.5 KiB typically
PURPOSES = 24  # the width of every purpose bitfield
SPECIAL_FEATURES = 12
_VERSION = 2


@dataclass(frozen=True, slots=True, repr=False)
class IdSet:
    """A set of IDs 1..``max_id``: ``id in ids``, ``len(ids)``, iteration in ascending order.

    Held as the wire's bitfield, one integer whose most significant of ``max_id`` bits stands
    for ID 1, whether it was encoded as a bitfield or as ranges: at most 8 KiB a set.
    """

    max_id: int
    bits: int

    def __contains__(self, item: object) -> bool:
        return (
            isinstance(item, int)
            and 0 < item <= self.max_id
            and (self.bits >> (self.max_id - item)) & 1 == 1
        )

    def __iter__(self) -> Iterator[int]:
        digits = format(self.bits, f"0{self.max_id}b") if self.max_id else ""
        return (index for index, digit in enumerate(digits, 1) if digit == "1")

    def __len__(self) -> int:
        return self.bits.bit_count()

    def __repr__(self) -> str:
        return f"IdSet(max_id={self.max_id}, ids={list(self)})"


class RestrictionType(IntEnum):
    """What a publisher restriction asks of the vendors it names, for one purpose."""

    NOT_ALLOWED = 0
    REQUIRE_CONSENT = 1
    REQUIRE_LEGITIMATE_INTEREST = 2


@dataclass(frozen=True, slots=True)
class PublisherRestriction:
    """One PubRestrictionEntry: ``vendor_id in restriction`` says whether it names that vendor.

    ``vendor_ranges`` are inclusive ``(start, end)`` pairs as encoded (a single ID is
    ``(id, id)``); the spec lets a range span IDs that are not on the vendor list.
    """

    purpose_id: int
    restriction_type: RestrictionType
    vendor_ranges: tuple[tuple[int, int], ...]

    def __contains__(self, vendor_id: object) -> bool:
        return isinstance(vendor_id, int) and any(
            start <= vendor_id <= end for start, end in self.vendor_ranges
        )


@dataclass(frozen=True, slots=True)
class PublisherTC:
    """The PublisherTC segment: the publisher's own purposes and its custom purposes."""

    purpose_consents: IdSet
    purpose_legitimate_interests: IdSet
    custom_purpose_consents: IdSet  # max_id is NumCustomPurposes
    custom_purpose_legitimate_interests: IdSet


@dataclass(frozen=True, slots=True)
class TCString:
    """A decoded version 2 TC string. ``created`` and ``last_updated`` are epoch deciseconds.

    The optional segments are ``None`` when absent. Bits are as encoded: whether a policy
    version, a legitimate-interest bit for purposes 1 and 3-6, or IsServiceSpecific=0 still
    counts is the privacy policy's question, not the decoder's.
    """

    created: int
    last_updated: int
    cmp_id: int
    cmp_version: int
    consent_screen: int
    consent_language: str
    vendor_list_version: int
    tcf_policy_version: int
    is_service_specific: bool
    use_non_standard_texts: bool
    special_feature_optins: IdSet
    purpose_consents: IdSet
    purpose_legitimate_interests: IdSet
    purpose_one_treatment: bool
    publisher_country_code: str
    vendor_consents: IdSet
    vendor_legitimate_interests: IdSet
    publisher_restrictions: tuple[PublisherRestriction, ...]
    disclosed_vendors: IdSet | None = None
    allowed_vendors: IdSet | None = None
    publisher_tc: PublisherTC | None = None

    def purpose_consent(self, purpose_id: int) -> bool:
        return purpose_id in self.purpose_consents

    def purpose_legitimate_interest(self, purpose_id: int) -> bool:
        return purpose_id in self.purpose_legitimate_interests

    def special_feature_optin(self, feature_id: int) -> bool:
        return feature_id in self.special_feature_optins

    def vendor_consent(self, vendor_id: int) -> bool:
        return vendor_id in self.vendor_consents

    def vendor_legitimate_interest(self, vendor_id: int) -> bool:
        return vendor_id in self.vendor_legitimate_interests

    def restriction(self, purpose_id: int, vendor_id: int) -> RestrictionType | None:
        """The publisher's restriction on this vendor for this purpose, ``None`` if none.

        Should several entries name the pair, the lowest type wins (NOT_ALLOWED first), as
        in the IAB's reference library.
        """
        found = [
            entry.restriction_type
            for entry in self.publisher_restrictions
            if entry.purpose_id == purpose_id and vendor_id in entry
        ]
        return min(found, default=None)


def decode_tc_string(text: str) -> TCString | Undecodable:
    """The TC string ``text`` decoded, or :class:`Undecodable`; never raises.

    Results are cached per string (``TC_STRING_CACHE_SIZE`` most recent), so the same
    immutable value comes back for the same string.
    """
    if not isinstance(text, str):
        return Undecodable("not a string")
    if not text:
        return Undecodable("empty")
    if len(text) > MAX_TC_STRING_LENGTH:
        return Undecodable(f"longer than {MAX_TC_STRING_LENGTH} characters")
    return _decode_cached(text)


@lru_cache(maxsize=TC_STRING_CACHE_SIZE)
def _decode_cached(text: str) -> TCString | Undecodable:
    try:
        return _decode(text)
    except Malformed as error:
        return Undecodable(str(error))


_SEGMENT_NAMES = {1: "DisclosedVendors", 2: "AllowedVendors", 3: "PublisherTC"}
_UNDEFINED_RESTRICTION = 3
_Optional = tuple[IdSet | None, IdSet | None, PublisherTC | None]


def _decode(text: str) -> TCString:
    core, *others = text.split(".")
    reader = BitReader(core, "the core segment")
    version = reader.read(6, "Version")
    if version != _VERSION:
        raise Malformed(f"version {version} is not {_VERSION}")
    # the other segments first, so that the value is built once, from the rest of the core
    return _read_core(reader, _read_optional_segments(others))


def _read_optional_segments(segments: list[str]) -> _Optional:
    """DisclosedVendors, AllowedVendors and PublisherTC, in any order, each at most once."""
    disclosed = allowed = None
    publisher = None
    seen: set[int] = set()
    for number, segment in enumerate(segments, 2):
        reader = BitReader(segment, f"segment {number}")
        kind = reader.read(3, "SegmentType")
        if kind not in _SEGMENT_NAMES:
            raise Malformed(f"segment {number} has the undefined SegmentType {kind}")
        reader.name = f"the {_SEGMENT_NAMES[kind]} segment"
        if kind in seen:
            raise Malformed(f"{reader.name} appears twice")
        seen.add(kind)
        if kind == 1:
            disclosed = _read_vendor_ids(reader, "DisclosedVendors")
        elif kind == 2:
            allowed = _read_vendor_ids(reader, "AllowedVendors")
        else:
            publisher = _read_publisher_tc(reader)
        reader.finish()
    return disclosed, allowed, publisher


def _read_core(reader: BitReader, optional: _Optional) -> TCString:
    """The core segment after its Version, with the optional segments already read."""
    disclosed, allowed, publisher = optional
    tc = TCString(
        created=reader.read(36, "Created"),
        last_updated=reader.read(36, "LastUpdated"),
        cmp_id=reader.read(12, "CmpId"),
        cmp_version=reader.read(12, "CmpVersion"),
        consent_screen=reader.read(6, "ConsentScreen"),
        consent_language=reader.letters("ConsentLanguage"),
        vendor_list_version=reader.read(12, "VendorListVersion"),
        tcf_policy_version=reader.read(6, "TcfPolicyVersion"),
        is_service_specific=reader.flag("IsServiceSpecific"),
        use_non_standard_texts=reader.flag("UseNonStandardTexts"),
        special_feature_optins=_fixed(reader, SPECIAL_FEATURES, "SpecialFeatureOptIns"),
        purpose_consents=_fixed(reader, PURPOSES, "PurposesConsent"),
        purpose_legitimate_interests=_fixed(reader, PURPOSES, "PurposesLITransparency"),
        purpose_one_treatment=reader.flag("PurposeOneTreatment"),
        publisher_country_code=reader.letters("PublisherCC"),
        vendor_consents=_read_vendor_ids(reader, "VendorConsents"),
        vendor_legitimate_interests=_read_vendor_ids(reader, "VendorLegitimateInterests"),
        publisher_restrictions=_read_restrictions(reader),
        disclosed_vendors=disclosed,
        allowed_vendors=allowed,
        publisher_tc=publisher,
    )
    reader.finish()
    return tc


def _fixed(reader: BitReader, width: int, field: str) -> IdSet:
    return IdSet(width, reader.read(width, field))


def _read_vendor_ids(reader: BitReader, section: str) -> IdSet:
    """MaxVendorId, IsRangeEncoding, then a bitfield or range entries."""
    max_id = reader.read(16, "MaxVendorId", section)
    if not reader.flag("IsRangeEncoding", section):
        return IdSet(max_id, reader.read(max_id, "BitField", section))
    bits = 0
    for start, end in _read_ranges(reader, section):
        if end > max_id:
            raise Malformed(f"{section} names vendor {end}, over its MaxVendorId {max_id}")
        bits |= ((1 << (end - start + 1)) - 1) << (max_id - end)
    return IdSet(max_id, bits)


def _read_ranges(reader: BitReader, section: str) -> tuple[tuple[int, int], ...]:
    """NumEntries, then each RangeEntry as an inclusive ``(start, end)``."""
    ranges = []
    for _ in range(reader.read(12, "NumEntries", section)):
        entry = reader.read(17, "RangeEntry", section)  # IsARange, StartOrOnlyVendorId
        start = entry & 0xFFFF
        end = reader.read(16, "EndVendorId", section) if entry > 0xFFFF else start
        if start == 0:
            raise Malformed(f"{section} names vendor 0")
        if end < start:
            raise Malformed(f"{section} has the range {start}-{end}, which ends before it starts")
        ranges.append((start, end))
    return tuple(ranges)


def _read_restrictions(reader: BitReader) -> tuple[PublisherRestriction, ...]:
    restrictions = []
    for _ in range(reader.read(12, "NumPubRestrictions")):
        purpose_id = reader.read(6, "PurposeId")
        kind = reader.read(2, "RestrictionType")
        if not 1 <= purpose_id <= PURPOSES:
            raise Malformed(f"a publisher restriction names purpose {purpose_id}, not 1-24")
        if kind == _UNDEFINED_RESTRICTION:
            raise Malformed(f"a publisher restriction has the undefined RestrictionType {kind}")
        ranges = _read_ranges(reader, "PubRestrictionEntry")
        restrictions.append(PublisherRestriction(purpose_id, RestrictionType(kind), ranges))
    return tuple(restrictions)


def _read_publisher_tc(reader: BitReader) -> PublisherTC:
    consents = _fixed(reader, PURPOSES, "PubPurposesConsent")
    legitimate_interests = _fixed(reader, PURPOSES, "PubPurposesLITransparency")
    custom = reader.read(6, "NumCustomPurposes")
    return PublisherTC(
        purpose_consents=consents,
        purpose_legitimate_interests=legitimate_interests,
        custom_purpose_consents=_fixed(reader, custom, "CustomPurposesConsent"),
        custom_purpose_legitimate_interests=_fixed(reader, custom, "CustomPurposesLITransparency"),
    )
