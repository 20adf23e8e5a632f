"""The IAB's OpenRTB 2.6 example bid requests and responses (specification section 6),
kept unchanged in ``src/cookiematch/conformance/openrtb-2.6-examples`` (shipped with the package:
``cookiematch conform buyer --bid-url`` sends the requests)."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "src/cookiematch/conformance/openrtb-2.6-examples"


def requests() -> list[Path]:
    return sorted(EXAMPLES.glob("request-*.json"))


def responses() -> list[Path]:
    return sorted(EXAMPLES.glob("response-*.json"))
