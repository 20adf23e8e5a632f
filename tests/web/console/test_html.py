"""The console's HTML helpers: every value escaped, the heat map coloured by classes (the
Content-Security-Policy allows no inline style)."""

from __future__ import annotations

from cookiematch.web.console.html import chart, heat_map


def test_the_heat_map_escapes_and_classes_its_cells() -> None:
    names = ["segment:<a>", "segment:b", "segment:c"]
    cells = {("segment:<a>", "segment:b"): 0.1, ("segment:c", "segment:b"): 7.0}
    found = heat_map(names, cells)
    assert "<a>" not in found and "segment:&lt;a&gt;" in found
    assert found.count("<td class=heat-0>0.10</td>") == 2  # both halves of the square
    assert found.count("<td class=heat-9>7.00</td>") == 2
    assert found.count("heat-none") == 5  # the diagonal and the unknown pair


def test_a_chart_names_its_source_escaped() -> None:
    found = chart('<b>"x"</b>', "pixel_outcomes", ratio=("a", "b"), only="error_")
    assert "<b>" not in found
    assert (
        'data-source="/console/api/series?name=pixel_outcomes&amp;minutes=60&amp;ratio=a%2Cb'
        in found
    )
