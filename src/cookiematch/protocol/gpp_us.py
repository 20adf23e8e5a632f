"""The GPP's US sections: US National (7, "usnat") and the states California, Virginia,
Colorado, Utah and Connecticut (8-12), each a core segment and, in 7, 8, 10 and 12, an
optional GPC segment after a ``.``.

Every field but the version is a 2-bit value whose meaning depends on the field (IAB GPP
section specifications):

    notices, opt-outs    0 not applicable, 1 yes / opted out, 2 no / did not opt out
    consents             0 not applicable, 1 no consent, 2 consent
    Mspa* fields         (0 not applicable,) 1 yes, 2 no

3 means nothing anywhere, so a field holding 3 makes the section malformed. The layout is
chosen by the section's Version field: usnat 1 has 12 sensitive-data and 2 known-child
consents, usnat 2 has 16 and 3; every state section is at version 1. A version we do not know
is malformed: its fields cannot be found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cookiematch.protocol.gpp_bits import BitReader, MalformedGpp

NOT_APPLICABLE = 0
OPTED_OUT = 1
"""Also "notice given" in a notice field."""
DID_NOT_OPT_OUT = 2
"""Also "notice not given" in a notice field."""

US_NATIONAL = 7
US_STATES = {8: "usca", 9: "usva", 10: "usco", 11: "usut", 12: "usct"}
US_SECTION_NAMES = {US_NATIONAL: "usnat", **US_STATES}


@dataclass(frozen=True, slots=True)
class UsOptOuts:
    """What a policy reads from any US section, in the 2-bit values above (``OPTED_OUT``…);
    None where the section has no such field. ``gpc`` is the section's GPC segment: None when
    it has none (absent, or the section defines none)."""

    section_id: int
    sale_opt_out: int | None
    sale_opt_out_notice: int | None
    sharing_opt_out: int | None
    sharing_opt_out_notice: int | None
    targeted_advertising_opt_out: int | None
    targeted_advertising_opt_out_notice: int | None
    gpc: bool | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UsSection:
    """One decoded US section; a field the section does not define is None (or ``()``)."""

    section_id: int
    version: int
    sharing_notice: int | None = None
    sale_opt_out_notice: int | None = None
    sharing_opt_out_notice: int | None = None
    targeted_advertising_opt_out_notice: int | None = None
    sensitive_data_processing_opt_out_notice: int | None = None
    sensitive_data_limit_use_notice: int | None = None
    sale_opt_out: int | None = None
    sharing_opt_out: int | None = None
    targeted_advertising_opt_out: int | None = None
    sensitive_data_processing: tuple[int, ...] = ()
    known_child_sensitive_data_consents: tuple[int, ...] = ()
    personal_data_consents: int | None = None
    mspa_covered_transaction: int
    mspa_opt_out_option_mode: int
    mspa_service_provider_mode: int
    gpc: bool | None = None
    opt_outs: UsOptOuts = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        summary = UsOptOuts(
            section_id=self.section_id,
            sale_opt_out=self.sale_opt_out,
            sale_opt_out_notice=self.sale_opt_out_notice,
            sharing_opt_out=self.sharing_opt_out,
            sharing_opt_out_notice=self.sharing_opt_out_notice,
            targeted_advertising_opt_out=self.targeted_advertising_opt_out,
            targeted_advertising_opt_out_notice=self.targeted_advertising_opt_out_notice,
            gpc=self.gpc,
        )
        object.__setattr__(self, "opt_outs", summary)

    @property
    def name(self) -> str:
        return US_SECTION_NAMES[self.section_id]


# A core segment's fields after the version, in order: 0 = one 2-bit value, n = a list of n.
_Fields = tuple[tuple[str, int], ...]
_MSPA: _Fields = (
    ("mspa_covered_transaction", 0),
    ("mspa_opt_out_option_mode", 0),
    ("mspa_service_provider_mode", 0),
)
_NOTICES = ("sharing_notice", "sale_opt_out_notice", "targeted_advertising_opt_out_notice")


def _usnat(sensitive: int, known_child: int) -> _Fields:
    return (
        ("sharing_notice", 0),
        ("sale_opt_out_notice", 0),
        ("sharing_opt_out_notice", 0),
        ("targeted_advertising_opt_out_notice", 0),
        ("sensitive_data_processing_opt_out_notice", 0),
        ("sensitive_data_limit_use_notice", 0),
        ("sale_opt_out", 0),
        ("sharing_opt_out", 0),
        ("targeted_advertising_opt_out", 0),
        ("sensitive_data_processing", sensitive),
        ("known_child_sensitive_data_consents", known_child),
        ("personal_data_consents", 0),
        *_MSPA,
    )


def _state(*notices: str, sensitive: int, known_child: int) -> _Fields:
    """Virginia, Colorado, Utah and Connecticut: notices, then sale and targeted advertising."""
    return (
        *((notice, 0) for notice in notices),
        ("sale_opt_out", 0),
        ("targeted_advertising_opt_out", 0),
        ("sensitive_data_processing", sensitive),
        ("known_child_sensitive_data_consents", known_child),
        *_MSPA,
    )


_CALIFORNIA: _Fields = (
    ("sale_opt_out_notice", 0),
    ("sharing_opt_out_notice", 0),
    ("sensitive_data_limit_use_notice", 0),
    ("sale_opt_out", 0),
    ("sharing_opt_out", 0),
    ("sensitive_data_processing", 9),
    ("known_child_sensitive_data_consents", 2),
    ("personal_data_consents", 0),
    *_MSPA,
)


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each field sits among a core segment's 2-bit values."""

    count: int
    slots: tuple[tuple[str, int, int], ...]  # name, first value, list length (0: one value)

    @classmethod
    def of(cls, fields: _Fields) -> _Layout:
        slots = []
        start = 0
        for name, length in fields:
            slots.append((name, start, length))
            start += length or 1
        return cls(start, tuple(slots))


_LAYOUTS: dict[tuple[int, int], _Layout] = {
    (7, 1): _Layout.of(_usnat(sensitive=12, known_child=2)),
    (7, 2): _Layout.of(_usnat(sensitive=16, known_child=3)),
    (8, 1): _Layout.of(_CALIFORNIA),
    (9, 1): _Layout.of(_state(*_NOTICES, sensitive=8, known_child=1)),
    (10, 1): _Layout.of(_state(*_NOTICES, sensitive=7, known_child=1)),
    (11, 1): _Layout.of(
        _state(*_NOTICES, "sensitive_data_processing_opt_out_notice", sensitive=8, known_child=1)
    ),
    (12, 1): _Layout.of(_state(*_NOTICES, sensitive=8, known_child=3)),
}
_WITH_GPC_SEGMENT = frozenset({7, 8, 10, 12})
_GPC_SUBSECTION = 1


def decode_us_section(section_id: int, payload: str) -> UsSection:
    """Section ``section_id`` (7-12) from its payload; raises MalformedGpp."""
    core, *subsections = payload.split(".")
    reader = BitReader(core)
    version = reader.integer(6)
    layout = _LAYOUTS.get((section_id, version))
    if layout is None:
        raise MalformedGpp(f"section {section_id} has an unknown version {version}")
    values = reader.two_bit_values(layout.count)
    reader.finish()
    fields: dict[str, Any] = {
        name: values[start : start + length] if length else values[start]
        for name, start, length in layout.slots
    }
    if subsections:
        if len(subsections) > 1 or section_id not in _WITH_GPC_SEGMENT:
            raise MalformedGpp(f"section {section_id} has a subsection it does not define")
        fields["gpc"] = _gpc(subsections[0])
    return UsSection(section_id=section_id, version=version, **fields)


def _gpc(subsection: str) -> bool:
    reader = BitReader(subsection)
    if reader.integer(2) != _GPC_SUBSECTION:
        raise MalformedGpp("a subsection is not the GPC subsection")
    gpc = reader.integer(1) == 1
    reader.finish()
    return gpc
