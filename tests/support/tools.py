"""External tools the tests run (promtool, node, ...): found on PATH, or the test is skipped
locally and FAILS under ``CI=true`` (CI installs every one of them: ``make system-deps``)."""

from __future__ import annotations

import os
import shutil

import pytest


def unavailable(reason: str) -> None:
    """Skip the test, or fail it under ``CI=true``, because ``reason``."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def tool(name: str, *, package: str) -> str:
    """The path of ``name``, installed by the Debian package ``package``."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (make system-deps installs {package})")
    assert path is not None
    return path
