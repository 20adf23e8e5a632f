"""What ``deploy/`` asks of Prometheus exists: every query of the Grafana dashboard parses
(``promtool`` checks it as a rule) and every ``cookiematch_*`` series the dashboard and the
alert rules read is exposed by one of the roles, scraped from real servers."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import REPO, ServerProcess, free_port
from support.configs import buyer_config, dmp_config, serve_argv, write_exchange_config
from support.tools import tool

DASHBOARD = REPO / "deploy" / "grafana" / "cookiematch.json"
RULES = REPO / "deploy" / "prometheus" / "cookiematch.rules.yml"
ROLES: dict[str, Callable[[Path, int], Path]] = {
    "exchange": lambda directory, port: write_exchange_config(directory, port),
    "buyer": buyer_config,
    "dmp": dmp_config,
}
SERIES = re.compile(r"(?<![\w:])cookiematch_\w+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def dashboard_queries() -> list[tuple[str, str]]:
    """``(panel title, expression)`` of every query of the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", ())
    ]


@pytest.fixture(scope="module")
def exposed(
    tmp_path_factory: pytest.TempPathFactory, start_module_server: Callable[..., ServerProcess]
) -> set[str]:
    """Every series name the three roles expose (a counter's ``_total``, a histogram's
    ``_bucket``, ``_count`` and ``_sum``)."""
    names: set[str] = set()
    for role, config in ROLES.items():
        port = free_port()
        server = start_module_server(
            serve_argv(config(tmp_path_factory.mktemp(role), port), role), port=port
        )
        text = httpx.get(server.url + "/metrics", timeout=10).text
        for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
            base = family.removesuffix("_total") if kind == "counter" else family
            names.update(base + suffix for suffix in SUFFIXES.get(kind, ("",)))
    return names


def test_the_dashboard_is_grafana_json_with_queries() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "cookiematch" and board["panels"]
    assert all(expr for _, expr in dashboard_queries())
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:query{i}",
                        "expr": expr.replace("$__rate_interval", "5m").replace("$job", ".*"),
                    }
                    for i, (_, expr) in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    done = subprocess.run(
        [tool("promtool", package="prometheus"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_series_read_is_exposed(source: str, exposed: set[str]) -> None:
    if source == "dashboard":
        text = "\n".join(expr for _, expr in dashboard_queries())
    else:
        text = RULES.read_text()
    read = set(SERIES.findall(text))
    assert read, "the queries read cookiematch series"
    assert read <= exposed, sorted(read - exposed)
