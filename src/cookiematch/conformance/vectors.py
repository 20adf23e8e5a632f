"""The seed's examples as golden vectors, shipped with the package (``vectors/*.json``): the
protocol tests and ``cookiematch conform exchange`` read the same file."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def load(name: str) -> dict[str, Any]:
    """One vector file of ``vectors/`` (for example ``redirects.json``), parsed."""
    text = resources.files(__package__).joinpath("vectors", name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
