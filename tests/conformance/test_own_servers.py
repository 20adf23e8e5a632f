"""``cookiematch conform`` against the project's own buyer and exchange, run as real
processes: every required case passes, and the reports are written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from .servers import BUYER_EXCHANGE, STAND_IN_OPTIONS, conform, start_buyer, start_exchange
from conftest import ServerProcess


@pytest.fixture(scope="module")
def buyer(
    start_module_server: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    return start_buyer(start_module_server, tmp_path_factory.mktemp("buyer"))


def test_the_project_buyer_conforms(buyer: ServerProcess, tmp_path: Path) -> None:
    junit, report = tmp_path / "junit.xml", tmp_path / "report.html"
    done = conform(
        "buyer", "--match-url", f"{buyer.url}/match?id=", "--push-url", f"{buyer.url}/push",
        "--exchange-url", BUYER_EXCHANGE, "--bid-url", f"{buyer.url}/bid", "--nid", "dsp",
        "--max-ms", "2000", "--junit", str(junit), "--html", str(report),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    assert "google_error=1 opts out" in done.stdout
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert {s.get("name") for s in suites} == {"conform.match", "conform.push", "conform.bid"}
    assert all(s.get("failures") == "0" for s in suites)
    assert sum(int(s.get("tests", "0")) for s in suites) >= 30
    page = report.read_text()
    assert "<style>" in page and "conforms" in page
    assert "src=" not in page and "<link" not in page  # self-contained


def test_a_buyer_answering_204_conforms(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    buyer = start_buyer(start_server, tmp_path, response="204")
    done = conform("buyer", "--match-url", f"{buyer.url}/match", "--max-ms", "2000")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS  match     gid and cver, new browser" in done.stdout
    assert " 204 in " in done.stdout


@pytest.fixture(scope="module")
def exchange(
    start_module_server: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    return start_exchange(start_module_server, tmp_path_factory.mktemp("exchange"))


def test_the_project_exchange_conforms(exchange: ServerProcess, tmp_path: Path) -> None:
    """Every vector runs and passes when the options give what stands for the states that
    contradict the seed's setup."""
    junit = tmp_path / "junit.xml"
    url = f"{exchange.url}/pixel"
    done = conform("exchange", "--url", url, *STAND_IN_OPTIONS, "--junit", str(junit))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not run" not in done.stdout and "FAIL" not in done.stdout, done.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    assert suite.get("skipped") == "0"
    assert int(suite.get("tests", "0")) == 30, done.stdout
    assert "PASS  exchange  simple request: opted out" in done.stdout
    assert "PASS  exchange  hosted match: putting it all together" in done.stdout


def test_without_the_options_their_cases_are_not_run(exchange: ServerProcess) -> None:
    done = conform("exchange", "--url", f"{exchange.url}/pixel")
    assert done.returncode == 0, done.stdout + done.stderr
    skipped = [line for line in done.stdout.splitlines() if "not run:" in line]
    named = ("--optout-cookie", "--extended-nid", "--extended-nid", "--denied-list",
             "--denied-list", "--hosted-list")  # fmt: skip
    assert len(skipped) == len(named), done.stdout
    for line, option in zip(skipped, named, strict=True):
        assert line.endswith(f"({option})"), line
    assert "24 pass, 6 not run" in done.stdout
