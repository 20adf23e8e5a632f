"""Loading of the golden vectors in tests/protocol/golden/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).parent / "golden"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / name).read_text(encoding="utf-8"))
    return data


def cases(name: str) -> list[Any]:
    """The file's cases as pytest params, each with a readable id."""
    return [
        pytest.param(case, id=case.get("name") or case.get("raw") or case.get("value") or str(i))
        for i, case in enumerate(load(name)["cases"])
    ]
