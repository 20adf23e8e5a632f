"""Data shipped with the package that the tests read too, so that the kit and the tests cannot
drift: the seed's examples as golden vectors (``vectors/*.json``, played by ``cookiematch
conform exchange``) and the IAB's OpenRTB 2.6 example bid requests
(``openrtb-2.6-examples/``, sent by ``cookiematch conform buyer --bid-url``)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

IAB_EXAMPLES = "openrtb-2.6-examples"


def load(name: str) -> dict[str, Any]:
    """One vector file of ``vectors/`` (for example ``redirects.json``), parsed."""
    text = resources.files(__package__).joinpath("vectors", name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def iab_requests() -> list[tuple[str, bytes]]:
    """The IAB's example bid requests (name without ``.json``, body), unchanged, by name."""
    folder = resources.files(__package__).joinpath(IAB_EXAMPLES)
    found = [f for f in folder.iterdir() if f.name.startswith("request-")]
    return [
        (f.name.removesuffix(".json"), f.read_bytes()) for f in sorted(found, key=lambda f: f.name)
    ]
