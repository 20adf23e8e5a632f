"""The console's HTML: one layout, a chart placeholder, tables; every value escaped here.

Pages are server-rendered. A chart is a ``<figure>`` naming its series; ``console.js`` (the
only script, with the vendored uPlot) fetches ``/console/api/series`` and draws it. The
Content-Security-Policy allows scripts, styles and fetches from the console's own origin only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from urllib.parse import urlencode

from cookiematch.web.console.session import PATH

__all__ = ["HEADERS", "chart", "document", "form_token", "heat_map", "table"]

STATIC = f"{PATH}/static"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # keeps Origin on the console's own POSTs
    "Cache-Control": "no-store",
}
CSRF_FIELD = "csrf"


def form_token(csrf: str) -> str:
    """The hidden field every console form carries."""
    return f'<input type=hidden name={CSRF_FIELD} value="{escape(csrf)}">'


def chart(
    title: str,
    series: str,
    *,
    minutes: int = 60,
    ratio: tuple[str, str] | None = None,
    share: str | None = None,
    only: str | None = None,
    unit: str = "",
) -> str:
    """A chart of series ``series`` over the last ``minutes``; ``ratio`` (numerator,
    denominator) draws their quotient per line, ``share`` the part of one label in its
    group, ``only`` the lines with a label starting with it."""
    query: dict[str, str | int] = {"name": series, "minutes": minutes}
    if ratio is not None:
        query["ratio"] = f"{ratio[0]},{ratio[1]}"
    if share is not None:
        query["share"] = share
    if only is not None:
        query["only"] = only
    source = f"{PATH}/api/series?{urlencode(query)}"
    return (
        f'<figure class=chart data-source="{escape(source)}" data-unit="{escape(unit)}">'
        f"<figcaption>{escape(title)}</figcaption></figure>"
    )


def table(head: Sequence[str], rows: Iterable[Sequence[str]], *, raw: int = -1) -> str:
    """A table; cells are escaped, but column ``raw`` (already rendered HTML, e.g. links)."""
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{cell if i == raw else escape(cell)}</td>" for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


HEAT_STEPS = (0.25, 0.5, 0.75, 0.9, 1.1, 1.5, 2.0, 3.0, 5.0)
"""Affinity thresholds of the heat map's classes ``heat-0`` (far below 1: the audiences avoid
each other) to ``heat-9`` (far above 1: they go together); ``heat-4`` is about independent."""


def heat_map(names: Sequence[str], cells: dict[tuple[str, str], float]) -> str:
    """A square table of ``names``, each cell coloured by its value (``cells[(a, b)]`` or
    ``cells[(b, a)]``) through CSS classes: the CSP allows no inline style."""
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    rows = []
    for a in names:
        tds = []
        for b in names:
            value = cells.get((a, b), cells.get((b, a)))
            if a == b or value is None:
                tds.append("<td class=heat-none></td>")
                continue
            step = sum(value > t for t in HEAT_STEPS)
            tds.append(f"<td class=heat-{step}>{value:.2f}</td>")
        rows.append(f"<tr><th>{escape(a)}</th>{''.join(tds)}</tr>")
    return f"<table class=heat><thead><tr><th></th>{head}</tr></thead>{''.join(rows)}</table>"


def document(
    title: str,
    body: str,
    *,
    role: str,
    nav: Sequence[tuple[str, str]] = (),
    csrf: str | None = None,
    who: str = "",
) -> str:
    """A whole page: ``nav`` (path, label) links and a logout button when logged in."""
    links = "".join(f'<a href="{escape(path)}">{escape(label)}</a>' for path, label in nav)
    logout = (
        f'<form class=logout method=post action="{PATH}/logout">{form_token(csrf)}'
        f"<span>{escape(who)}</span> <button>Log out</button></form>"
        if csrf is not None
        else ""
    )
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}: cookiematch {escape(role)}</title>"
        f'<link rel=stylesheet href="{STATIC}/uplot.min.css">'
        f'<link rel=stylesheet href="{STATIC}/console.css">'
        f'<script src="{STATIC}/uplot.iife.min.js" defer></script>'
        f'<script src="{STATIC}/console.js" defer></script>'
        f"<header><strong>cookiematch {escape(role)}</strong><nav>{links}</nav>{logout}</header>"
        f"<main><h1>{escape(title)}</h1>{body}</main></html>"
    )
