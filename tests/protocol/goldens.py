"""Loading of the golden vectors in tests/protocol/golden/, and of those the package ships
(src/cookiematch/conformance/vectors/: the conformance kit plays them too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cookiematch.conformance import vectors

GOLDEN = Path(__file__).parent / "golden"
PACKAGED = frozenset({"redirects.json"})


def load(name: str) -> dict[str, Any]:
    if name in PACKAGED:
        return vectors.load(name)
    data: dict[str, Any] = json.loads((GOLDEN / name).read_text(encoding="utf-8"))
    return data


def cases(name: str) -> list[Any]:
    """The file's cases as pytest params, each with a readable id."""
    return [
        pytest.param(case, id=case.get("name") or case.get("raw") or case.get("value") or str(i))
        for i, case in enumerate(load(name)["cases"])
    ]
