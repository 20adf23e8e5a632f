"""Each role's access and erasure of one subject (``privacy/subjects.py``), for the CLI.

``SUBJECT_DATA`` names, per role, the function of its composition root that builds its
``SubjectData`` over an open store: ``subject_data(config, store)``. The role's server builds
the same object for its admin API and its opt-out page.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from cookiematch.config import Config
from cookiematch.errors import ConfigError
from cookiematch.privacy.subjects import SubjectData
from cookiematch.storage import Store

__all__ = ["SUBJECT_DATA", "subject_data"]

SUBJECT_DATA: dict[str, str] = {
    "buyer": "cookiematch.roots.buyer:subject_data",
    "dmp": "cookiematch.roots.dmp:subject_data",
    "exchange": "cookiematch.roots.exchange:subject_data",
}
"""``module:function`` by role; importing this module imports no role."""


def subject_data(role: str, config: Config, store: Store) -> SubjectData:
    """The ``SubjectData`` of ``role`` over ``store``."""
    if getattr(config, role, None) is None:
        raise ConfigError(f"the configuration has no [{role}] table")
    module, _, name = SUBJECT_DATA[role].partition(":")
    build = cast(
        Callable[[Config, Store], SubjectData], getattr(importlib.import_module(module), name)
    )
    return build(config, store)
