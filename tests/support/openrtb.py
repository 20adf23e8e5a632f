"""The IAB's OpenRTB 2.6 example bid requests and responses (specification section 6),
kept unchanged in ``tests/data/openrtb-2.6-examples``."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "openrtb-2.6-examples"


def requests() -> list[Path]:
    return sorted(EXAMPLES.glob("request-*.json"))


def responses() -> list[Path]:
    return sorted(EXAMPLES.glob("response-*.json"))
