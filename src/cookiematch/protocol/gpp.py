"""IAB Global Privacy Platform (GPP) strings, version 1: a header, then one section per ID.

    DBACNY~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA~1YNN
    header  section 2 (TCF EU v2)                        section 6 (US Privacy)

The header (base64url bits) holds Type = 3, Version = 1 and the section IDs as a
Range(Fibonacci); the sections follow in that order, joined by ``~``. Decoded here:

    2      TCF EU v2: its payload, kept as text for the TCF decoder
    6      US Privacy: a US Privacy string (:mod:`cookiematch.protocol.usprivacy`)
    7-12   US National and the states CA, VA, CO, UT, CT (:mod:`cookiematch.protocol.gpp_us`)
    other  present, not decoded (:class:`UndecodedSection`)

A string decodes as a whole or not at all: a malformed header, a count of IDs that differs
from the count of sections, an empty section or a section 6-12 that does not decode makes it
:class:`~cookiematch.protocol.undecodable.Undecodable`. Which sections are in force for a
request is not in the string: the request's ``gpp_sid`` says it (:func:`applicable`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from cookiematch.protocol.gpp_bits import BitReader, MalformedGpp
from cookiematch.protocol.gpp_us import US_SECTION_NAMES, UsOptOuts, UsSection, decode_us_section
from cookiematch.protocol.privacy import MAX_GPP_LENGTH
from cookiematch.protocol.undecodable import Undecodable
from cookiematch.protocol.usprivacy import UsPrivacy, decode_us_privacy

HEADER_TYPE = 3
GPP_VERSION = 1
TCF_EU_V2 = 2
US_PRIVACY = 6
CACHE_SIZE = 1024
"""Distinct GPP strings kept decoded (per process); each entry is a few kB at most."""
MAX_GPP_SIDS = 32

_GPP_TEXT = re.compile(r"[A-Za-z0-9_.~-]+")
_GPP_SID = re.compile(r"-?[0-9]{1,4}")
_FLAG_AS_CHOICE = {True: 1, False: 2, None: 0}  # Y = yes / opted out, N = no, '-' = n/a


@dataclass(frozen=True, slots=True)
class TcfEuV2Section:
    """Section 2: a TC string's segments, as the GPP carries them (not decoded here)."""

    payload: str
    section_id: ClassVar[int] = TCF_EU_V2
    opt_outs: ClassVar[None] = None


@dataclass(frozen=True, slots=True)
class UsPrivacySection:
    """Section 6: a US Privacy string; its opt-outs read as a US section's (Y = 1, N = 2,
    '-' = 0), the notice being the notice of the opt-out of sale."""

    us_privacy: UsPrivacy
    section_id: ClassVar[int] = US_PRIVACY
    opt_outs: UsOptOuts = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        summary = UsOptOuts(
            section_id=US_PRIVACY,
            sale_opt_out=_FLAG_AS_CHOICE[self.us_privacy.opt_out_sale],
            sale_opt_out_notice=_FLAG_AS_CHOICE[self.us_privacy.notice],
            sharing_opt_out=None,
            sharing_opt_out_notice=None,
            targeted_advertising_opt_out=None,
            targeted_advertising_opt_out_notice=None,
            gpc=None,
        )
        object.__setattr__(self, "opt_outs", summary)


@dataclass(frozen=True, slots=True)
class UndecodedSection:
    """A section this module does not decode: present, its payload kept as is."""

    section_id: int
    payload: str
    opt_outs: ClassVar[None] = None


GppSection = TcfEuV2Section | UsPrivacySection | UsSection | UndecodedSection
"""Every section has ``section_id`` and ``opt_outs`` (a :class:`UsOptOuts` for 6-12, else
None)."""


@dataclass(frozen=True, slots=True)
class GppString:
    """A decoded GPP string: ``sections`` by ID, in the string's order."""

    version: int
    section_ids: tuple[int, ...]
    sections: Mapping[int, GppSection]

    @property
    def tcf_eu_v2(self) -> str | None:
        """Section 2's payload, for the TCF decoder; None when absent."""
        section = self.sections.get(TCF_EU_V2)
        return section.payload if isinstance(section, TcfEuV2Section) else None

    @property
    def us_privacy(self) -> UsPrivacy | None:
        section = self.sections.get(US_PRIVACY)
        return section.us_privacy if isinstance(section, UsPrivacySection) else None


_TOO_LONG = Undecodable(f"a GPP string is longer than {MAX_GPP_LENGTH} characters")


def decode_gpp(text: str) -> GppString | Undecodable:
    """The GPP string ``text``, or why it does not decode. Never raises; each distinct string
    is decoded once (the last ``CACHE_SIZE`` are kept)."""
    if len(text) > MAX_GPP_LENGTH:
        return _TOO_LONG
    return _decode_cached(text)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _decode_cached(text: str) -> GppString | Undecodable:
    try:
        return _decode(text)
    except MalformedGpp as error:
        return Undecodable(str(error))


def _decode(text: str) -> GppString:
    if _GPP_TEXT.fullmatch(text) is None:
        raise MalformedGpp("a GPP string is base64url characters, '.' and '~'")
    header, *payloads = text.split("~")
    reader = BitReader(header)
    if reader.integer(6) != HEADER_TYPE:
        raise MalformedGpp("the header's type is not 3")
    version = reader.integer(6)
    if version != GPP_VERSION:
        raise MalformedGpp(f"GPP version {version} is not known")
    section_ids = reader.fibonacci_range(max_values=len(payloads))
    reader.finish()
    if len(section_ids) != len(payloads):
        raise MalformedGpp("the header lists fewer section IDs than there are sections")
    sections = {
        section_id: _decode_section(section_id, payload)
        for section_id, payload in zip(section_ids, payloads, strict=True)
    }
    return GppString(version, section_ids, MappingProxyType(sections))


def _decode_section(section_id: int, payload: str) -> GppSection:
    if not payload:
        raise MalformedGpp(f"section {section_id} is empty")
    if section_id == TCF_EU_V2:
        return TcfEuV2Section(payload)
    if section_id == US_PRIVACY:
        us_privacy = decode_us_privacy(payload)
        if isinstance(us_privacy, Undecodable):
            raise MalformedGpp(f"section 6: {us_privacy.reason}")
        return UsPrivacySection(us_privacy)
    if section_id in US_SECTION_NAMES:
        return decode_us_section(section_id, payload)
    return UndecodedSection(section_id, payload)


def parse_gpp_sid(text: str) -> tuple[int, ...] | Undecodable:
    """The section IDs of a ``gpp_sid`` parameter ("2,6"); ``()`` when it is empty."""
    if text == "":
        return ()
    parts = text.split(",", MAX_GPP_SIDS)
    if len(parts) > MAX_GPP_SIDS or not all(_GPP_SID.fullmatch(part) for part in parts):
        return Undecodable("gpp_sid is not a list of section IDs")
    return tuple(int(part) for part in parts)


def applicable(gpp: GppString, gpp_sid: Iterable[int]) -> tuple[GppSection, ...]:
    """The sections of ``gpp`` in force for a request whose ``gpp_sid`` (OpenRTB
    ``regs.gpp_sid``, or :func:`parse_gpp_sid` of the URL parameter) names them.

    IDs the string does not hold, and the "none applies" values -1 and 0, select nothing; so
    does an empty ``gpp_sid``: the string alone never says which section is in force.
    """
    in_force = set(gpp_sid)
    return tuple(section for sid, section in gpp.sections.items() if sid in in_force)
