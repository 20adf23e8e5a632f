"""The Prometheus rules in ``deploy/prometheus`` are valid (``promtool check rules``) and alert
when they should (``promtool test rules`` over the series in ``cookiematch.rules.test.yml``)."""

from __future__ import annotations

import subprocess

from conftest import REPO
from support.tools import tool

RULES = REPO / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    command = [tool("promtool", package="prometheus"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=RULES)


def test_the_rules_are_valid() -> None:
    done = _promtool("check", "rules", "cookiematch.rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_alerts_fire_on_their_unit_series() -> None:
    done = _promtool("test", "rules", "cookiematch.rules.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
