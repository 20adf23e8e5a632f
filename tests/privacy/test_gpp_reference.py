"""Differential tests: GPP and US Privacy strings encoded by the IAB's own library
(@iabgpp/cmpapi, tests/reference/gpp.mjs) read back field by field.

The node script runs once for the module. Without node or the library the tests skip, and
fail under CI=true (``make reference-encoders`` installs both).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cookiematch.protocol.gpp import (
    GppString,
    TcfEuV2Section,
    UndecodedSection,
    UsPrivacySection,
    decode_gpp,
)
from cookiematch.protocol.gpp_us import UsSection
from cookiematch.protocol.undecodable import Undecodable
from cookiematch.protocol.usprivacy import UsPrivacy, decode_us_privacy

REFERENCE = Path(__file__).resolve().parent.parent / "reference"
SEED = 2024
GPP_CASES = 300
US_PRIVACY_CASES = 100

SECTION_IDS = {
    "tcfeuv2": 2,
    "uspv1": 6,
    "usnat": 7,
    "usca": 8,
    "usva": 9,
    "usco": 10,
    "usut": 11,
    "usct": 12,
}
FLAGS = {"Y": True, "N": False, "-": None}

Case = dict[str, Any]


def _node() -> str:
    """node's path; skips (fails under CI=true) when node or the library is missing."""
    node = shutil.which("node")
    library = REFERENCE / "node_modules" / "@iabgpp" / "cmpapi"
    if node is not None and library.is_dir():
        return node
    missing = "node is not on PATH" if node is None else f"{library} is missing"
    reason = f"the IAB reference encoder cannot run: {missing} (make reference-encoders)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _run_reference() -> list[Case]:
    script = REFERENCE / "gpp.mjs"
    command = [_node(), str(script), str(SEED), str(GPP_CASES), str(US_PRIVACY_CASES)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def reference() -> list[Case]:
    return _run_reference()


@pytest.fixture(scope="module")
def gpp_cases(reference: list[Case]) -> list[Case]:
    return [case for case in reference if case["kind"] == "gpp"]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _expected_us_section(section_id: int, fields: dict[str, Any]) -> UsSection:
    values: dict[str, Any] = {"version": 1}
    for name, value in fields.items():
        if name in ("GpcSegmentIncluded", "Gpc"):
            continue
        # Virginia, Colorado and Utah have one known-child consent: a list of one here
        values[_snake(name)] = tuple(value) if isinstance(value, list) else value
    known_child = values.get("known_child_sensitive_data_consents")
    if isinstance(known_child, int):
        values["known_child_sensitive_data_consents"] = (known_child,)
    gpc = fields["Gpc"] if fields.get("GpcSegmentIncluded") else None
    return UsSection(section_id=section_id, gpc=gpc, **values)


def _breaks_us_privacy(fields: dict[str, str]) -> bool:
    """An unknown opt-out of sale while the CCPA applies (docs/privacy.md)."""
    return fields["OptOutSale"] == "-" and set(fields.values()) != {"-"}


def _differences(case: Case) -> list[str]:
    sections: dict[str, dict[str, Any]] = case["sections"]
    decoded = decode_gpp(case["gpp"])
    if "uspv1" in sections and _breaks_us_privacy(sections["uspv1"]):
        return [] if isinstance(decoded, Undecodable) else ["decoded despite uspv1 '-' opt-out"]
    if not isinstance(decoded, GppString):
        return [f"undecodable: {decoded.reason}"]
    problems = []
    names = [*sections, *(["tcfeuv2"] if case["tcfeuv2"] is not None else [])]
    expected_ids = tuple(sorted(SECTION_IDS[name] for name in names))
    if decoded.section_ids != expected_ids:
        problems.append(f"section IDs {decoded.section_ids} != {expected_ids}")
    if decoded.tcf_eu_v2 != case["tcfeuv2"]:
        problems.append(f"tcfeuv2 {decoded.tcf_eu_v2!r} != {case['tcfeuv2']!r}")
    for name, fields in sections.items():
        section_id = SECTION_IDS[name]
        actual = decoded.sections.get(section_id)
        expected: UsPrivacySection | UsSection
        if name == "uspv1":
            flags = [FLAGS[fields[key]] for key in ("Notice", "OptOutSale", "LspaCovered")]
            expected = UsPrivacySection(UsPrivacy(*flags))
        else:
            expected = _expected_us_section(section_id, fields)
        if actual != expected:
            problems.append(f"{name}: {actual} != {expected}")
    return problems


def test_the_reference_covers_every_section(gpp_cases: list[Case]) -> None:
    assert len(gpp_cases) == GPP_CASES
    seen = {name for case in gpp_cases for name in case["sections"]}
    seen |= {"tcfeuv2" for case in gpp_cases if case["tcfeuv2"] is not None}
    assert seen == set(SECTION_IDS)
    usnat = [case["sections"]["usnat"] for case in gpp_cases if "usnat" in case["sections"]]
    kinds = {(fields["Version"], fields["GpcSegmentIncluded"]) for fields in usnat}
    assert kinds == {(1, False), (1, True), (2, False), (2, True)}
    assert max(len(case["sections"]) for case in gpp_cases) >= 4


def test_every_gpp_string_reads_alike(gpp_cases: list[Case]) -> None:
    failures = {case["gpp"]: problems for case in gpp_cases if (problems := _differences(case))}
    assert not failures, json.dumps(failures, indent=1)[:4000]


def test_every_truncation_is_undecodable_or_loses_only_padding(gpp_cases: list[Case]) -> None:
    """Every proper prefix of every reference string: never raises; where it decodes, each
    decoded section is the whole string's (less a cut GPC subsection), text a prefix of it."""
    for case in gpp_cases:
        whole = decode_gpp(case["gpp"])
        if not isinstance(whole, GppString):
            continue
        for end in range(len(case["gpp"])):
            cut = decode_gpp(case["gpp"][:end])
            if isinstance(cut, Undecodable):
                continue
            assert cut.section_ids == whole.section_ids, case["gpp"][:end]
            for section_id, section in cut.sections.items():
                original = whole.sections[section_id]
                if isinstance(section, TcfEuV2Section | UndecodedSection):
                    assert isinstance(original, TcfEuV2Section | UndecodedSection)
                    assert original.payload.startswith(section.payload)
                elif isinstance(section, UsSection) and section.gpc is None:
                    assert section == dataclasses.replace(original, gpc=None), case["gpp"][:end]
                else:
                    assert section == original, case["gpp"][:end]


def test_every_us_privacy_string_reads_alike(reference: list[Case]) -> None:
    cases = [case for case in reference if case["kind"] == "usp"]
    assert len(cases) == US_PRIVACY_CASES
    for case in cases:
        fields = case["fields"]
        decoded = decode_us_privacy(case["usp"])
        if _breaks_us_privacy(fields):
            assert isinstance(decoded, Undecodable), case
            continue
        flags = [FLAGS[fields[key]] for key in ("Notice", "OptOutSale", "LspaCovered")]
        assert decoded == UsPrivacy(*flags), case
