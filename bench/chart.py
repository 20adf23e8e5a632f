"""An SVG bar chart of a benchmark result: each endpoint's ratio to nginx, with its target.

    .venv/bin/python bench/chart.py var/bench/latest.json [-o docs/performance.svg]

Hand-written SVG, no plotting library: one group of bars per endpoint, one bar per
store x workers, a dashed line at the endpoint's target ratio; endpoint names wrapped to their
group's width.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from html import escape
from pathlib import Path

COLOURS = ["#2563eb", "#93c5fd", "#dc2626", "#fca5a5", "#059669", "#6ee7b7"]


def svg(result: dict[str, object]) -> str:
    rows = result["rows"]
    assert isinstance(rows, list)
    endpoints = list(dict.fromkeys(r["endpoint"] for r in rows))
    series = list(dict.fromkeys((r["store"], r["workers"]) for r in rows))
    by = {(r["endpoint"], r["store"], r["workers"]): r for r in rows}
    top = max(0.5, *(r["ratio"] for r in rows), *(r["target"] for r in rows)) * 1.1
    bar, gap, left, height, base = 18, 26, 60, 260, 300
    group = bar * len(series) + gap
    width = max(760, left + group * len(endpoints) + 20)
    y = lambda v: base - height * v / top  # noqa: E731
    labels = {e: textwrap.wrap(e, max(10, int(group / 6.2))) for e in endpoints}
    legend = base + 16 + 13 * max(len(lines) for lines in labels.values()) + 4
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{legend + 58}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">req/s as a fraction of '
        "nginx's static 302 (same run, same wrk script); dashed: target</text>",
    ]
    step = 0.1
    v = 0.0
    while v <= top:
        out.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            'stroke="#e5e7eb"/>'
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>'
        )
        v = round(v + step, 2)
    for i, endpoint in enumerate(endpoints):
        x0 = left + i * group + gap / 2
        target = None
        for j, (store, workers) in enumerate(series):
            row = by.get((endpoint, store, workers))
            if row is None:
                continue
            target = row["target"]
            x = x0 + j * bar
            out.append(
                f'<rect x="{x:.1f}" y="{y(row["ratio"]):.1f}" width="{bar - 2}" '
                f'height="{base - y(row["ratio"]):.1f}" fill="{COLOURS[j % len(COLOURS)]}">'
                f"<title>{escape(endpoint)} {store} x{workers}: {row['rps']:,} req/s, ratio "
                f"{row['ratio']:.3f}{ceiling_note(row)}, p99 {row['p99_ms']} ms</title></rect>"
                f'<text x="{x + bar / 2 - 1:.1f}" y="{y(row["ratio"]) - 3:.1f}" '
                f'text-anchor="middle" font-size="8">{row["ratio"]:.2f}</text>'
            )
        if target is not None:
            out.append(
                f'<line x1="{x0 - 4:.1f}" x2="{x0 + bar * len(series) + 2:.1f}" '
                f'y1="{y(target):.1f}" y2="{y(target):.1f}" stroke="#111" '
                'stroke-dasharray="4 3"/>'
            )
        label_x = x0 + bar * len(series) / 2
        for k, line in enumerate(labels[endpoint]):
            out.append(
                f'<text x="{label_x:.1f}" y="{base + 16 + 13 * k}" text-anchor="middle">'
                f"{escape(line)}</text>"
            )
    for j, (store, workers) in enumerate(series):
        lx = left + j * 120
        out.append(
            f'<rect x="{lx}" y="{legend}" width="12" height="12" '
            f'fill="{COLOURS[j % len(COLOURS)]}"/>'
            f'<text x="{lx + 16}" y="{legend + 10}">{store}, {workers} worker'
            f"{'s' if workers > 1 else ''}</text>"
        )
    machine = result.get("machine", {})
    assert isinstance(machine, dict)
    out.append(
        f'<text x="{left}" y="{legend + 38}" fill="#555">{escape(str(machine.get("nproc")))} cores '
        f"{escape(str(machine.get('cpu')))}, python {escape(str(machine.get('python')))}, "
        f"granian {escape(str(machine.get('granian')))}; {escape(str(result.get('started')))}"
        "</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def ceiling_note(row: dict[str, object]) -> str:
    """The row's ratio to the bare-granian ceiling, when the result has one."""
    ratio = row.get("ratio_to_ceiling")
    return f" ({ratio:.3f} of the ceiling)" if isinstance(ratio, float) else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    output = args.output or args.result.with_suffix(".svg")
    output.write_text(svg(json.loads(args.result.read_text())))
    print(f"chart: {output}")


if __name__ == "__main__":
    main()
