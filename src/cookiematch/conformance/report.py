"""The results rendered three ways: a terminal table, JUnit XML for CI, a self-contained HTML
report (inline CSS, no external assets). ``passed`` decides the exit code."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from xml.etree import ElementTree as ET

from cookiematch.conformance.case import Result

_MARK = {"pass": "PASS", "fail": "FAIL", "warn": "WARN", "not run": "----"}


def passed(results: Sequence[Result]) -> bool:
    """True when no required case failed."""
    return all(r.status != "fail" for r in results)


def _detail(result: Result) -> str:
    if result.answer is None:
        return f"not run: {result.case.not_run}"
    if result.failures:
        return "; ".join(result.failures)
    return f"{result.answer.status} in {result.answer.seconds * 1000:.0f} ms"


def summary(results: Sequence[Result]) -> str:
    counts = Counter(r.status for r in results)
    return ", ".join(f"{counts[s]} {s}" for s in ("pass", "fail", "warn", "not run") if counts[s])


def table(results: Sequence[Result], title: str) -> str:
    """One line per case: status, group, name, then what went wrong (or status and time)."""
    width = max((len(r.case.name) for r in results), default=4)
    lines = [title, ""]
    for r in results:
        lines.append(f"{_MARK[r.status]}  {r.case.group:<8}  {r.case.name:<{width}}  {_detail(r)}")
    lines += ["", summary(results)]
    return "\n".join(lines) + "\n"


def junit(results: Sequence[Result], title: str) -> bytes:
    """JUnit XML: a testsuite per group, a testcase per case (a failed optional case is a
    passing testcase with its warning in system-out; a case not run is skipped)."""
    root = ET.Element("testsuites", name=title)
    for group in dict.fromkeys(r.case.group for r in results):
        members = [r for r in results if r.case.group == group]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"conform.{group}",
            tests=str(len(members)),
            failures=str(sum(r.status == "fail" for r in members)),
            skipped=str(sum(r.status == "not run" for r in members)),
        )
        for r in members:
            seconds = f"{r.answer.seconds:.3f}" if r.answer else "0"
            case = ET.SubElement(
                suite, "testcase", classname=f"conform.{group}", name=r.case.name, time=seconds
            )
            if r.status == "fail":
                ET.SubElement(case, "failure", message=r.failures[0]).text = "\n".join(r.failures)
            elif r.status == "not run":
                ET.SubElement(case, "skipped", message=r.case.not_run or "")
            elif r.status == "warn":
                ET.SubElement(case, "system-out").text = "warning: " + "; ".join(r.failures)
            ET.SubElement(case, "properties").append(
                ET.Element("property", name="seed", value=r.case.seed)
            )
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.4em .6em;text-align:left;vertical-align:top}
td.s{font-weight:bold;white-space:nowrap}.pass{color:#1a7f37}.fail{color:#cf222e}
.warn{color:#9a6700}.not-run{color:#777}code{font-size:.85em;word-break:break-all}
blockquote{margin:.2em 0;color:#555;font-style:italic}
"""


def _row(r: Result) -> str:
    e = html.escape
    css = r.status.replace(" ", "-")
    checks = ", ".join(e(c.what) for c in r.case.checks)
    return (
        f'<tr><td class="s {css}">{e(r.status)}</td><td>{e(r.case.group)}</td>'
        f"<td>{e(r.case.name)}<blockquote>{e(r.case.seed)}</blockquote></td>"
        f"<td><code>{e(r.case.request.method)} {e(r.case.request.url)}</code>"
        f"<br>checks: {checks}</td><td>{e(_detail(r))}</td></tr>"
    )


def html_report(results: Sequence[Result], title: str) -> str:
    """One HTML page, CSS inline, nothing loaded from elsewhere."""
    e = html.escape
    rows = "\n".join(_row(r) for r in results)
    verdict = "conforms" if passed(results) else "does not conform"
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{e(title)}</h1><p><b>{verdict}</b>: {e(summary(results))}</p>"
        "<table><thead><tr><th>status</th><th>group</th><th>case (the seed's words)</th>"
        f"<th>request</th><th>result</th></tr></thead><tbody>\n{rows}\n</tbody></table>"
        "</body></html>\n"
    )
