"""The three renderings of one set of results, and the verdict that makes the exit status."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from cookiematch.conformance import checks, report
from cookiematch.conformance.case import Answer, Case, Request, Result

OK = Answer(204, (), b"", 0.002)


def case(name: str, *, required: bool = True, not_run: str | None = None) -> Case:
    request = Request("GET", "http://buyer.example/match?a=<b>")
    return Case(name, "the seed's <words>", request, (checks.PIXEL,), required, not_run)


RESULTS = [
    Result(case("passes"), OK),
    Result(case("fails"), OK, ("answered 500: fix <this>",)),
    Result(case("warns", required=False), OK, ("lacks 'SameSite=None; Secure'",)),
    Result(case("skipped", not_run="needs a state"), None),
]


def test_statuses_and_verdict() -> None:
    assert [r.status for r in RESULTS] == ["pass", "fail", "warn", "not run"]
    assert not report.passed(RESULTS)
    assert report.passed([RESULTS[0], RESULTS[2], RESULTS[3]])  # warnings do not fail a run
    assert report.summary(RESULTS) == "1 pass, 1 fail, 1 warn, 1 not run"


def test_table() -> None:
    lines = report.table(RESULTS, "title").splitlines()
    assert lines[2].split() == ["PASS", "match", "passes", "204", "in", "2", "ms"]
    assert lines[3].startswith("FAIL") and lines[3].endswith("answered 500: fix <this>")
    assert lines[5].endswith("not run: needs a state")


def test_junit() -> None:
    suite = ET.fromstring(report.junit(RESULTS, "title")).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    failed, warned, skipped = (suite.find(f"testcase[@name='{n}']") for n in
                               ("fails", "warns", "skipped"))  # fmt: skip
    assert failed is not None and failed.find("failure") is not None
    assert warned is not None and warned.find("failure") is None
    assert skipped is not None and skipped.find("skipped") is not None


def test_html_is_escaped_and_self_contained() -> None:
    page = report.html_report(RESULTS, "title <x>")
    assert "fix &lt;this&gt;" in page and "<this>" not in page
    assert "title &lt;x&gt;" in page and "does not conform" in page
    assert "<style>" in page and "src=" not in page and "href=" not in page
