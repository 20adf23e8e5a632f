"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): where the samples go.

    .venv/bin/python bench/profile_summary.py PROFILE.txt [--top 25]

Prints the share of samples by *bucket* (adapter, parse, crypto, render, store, metrics,
event loop, idle...; a sample goes to the innermost frame that matches a bucket), then the top
functions by self samples and by inclusive samples. Frames look like ``func (file.py:line)``.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (bucket, pattern on "function (path:line)"); the innermost matching frame wins.
BUCKETS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        ("metrics (prometheus_client)", r"prometheus_client/"),
        ("store (storage/, sqlite3, redis)", r"cookiematch/storage/|sqlite3|/redis/|hiredis"),
        (
            "crypto (protocol/userid, push, cryptography)",
            r"protocol/(userid|push)\.py|cryptography/",
        ),
        (
            "parse (protocol/query, matchtag, cookies)",
            r"protocol/(query|matchtag|cookies|hosted)\.py",
        ),
        ("render (protocol/redirect, templates)", r"protocol/(redirect|templates)\.py"),
        ("response (web/http.py)", r"web/http\.py"),
        ("domain (exchange/, buyer/, dmp/)", r"cookiematch/(exchange|buyer|dmp)/"),
        ("handler (web/*_routes, *_app)", r"web/\w+_(routes|app)\.py"),
        ("adapter (web/rsgi, router)", r"web/(rsgi|router|asgi)\.py"),
        ("logging", r"logging/"),
        ("event loop (asyncio)", r"asyncio/"),
        ("threading (queue, threading)", r"/(threading|queue)\.py"),
    ]
]


def frames_of(stack: str) -> list[str]:
    return [f for f in stack.split(";") if f]


def bucket_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in BUCKETS:
            if pattern.search(frame):
                return name
    return "other (granian/native, idle)"


def short(frame: str) -> str:
    match = re.match(r"(.*) \((.*?):(\d+)\)$", frame)
    if not match:
        return frame
    func, path, line = match.groups()
    path = re.sub(r".*site-packages/", "", path)
    path = re.sub(r".*/src/", "", path)
    path = re.sub(r".*/lib/python3\.\d+/", "", path)
    return f"{func} ({path}:{line})"


def summarise(path: Path, top: int, thread_filter: str | None = None) -> str:
    buckets: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        if thread_filter and thread_filter not in stack:
            continue
        count = int(count_text)
        frames = frames_of(stack)
        # py-spy puts "process ..." and "thread ..." pseudo-frames first
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        total += count
        buckets[bucket_of(frames)] += count
        if frames:
            self_[short(frames[-1])] += count
        for frame in set(map(short, frames)):
            inclusive[frame] += count
    out = [f"{path}: {total} samples"]
    out.append("\nby bucket (innermost matching frame):")
    for name, n in buckets.most_common():
        out.append(f"  {100 * n / total:5.1f}%  {name}")
    out.append(f"\ntop {top} by self samples:")
    for name, n in self_.most_common(top):
        out.append(f"  {100 * n / total:5.1f}%  {name}")
    out.append(f"\ntop {top} by inclusive samples:")
    for name, n in inclusive.most_common(top):
        out.append(f"  {100 * n / total:5.1f}%  {name}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", default=None, help="only stacks containing this text")
    args = parser.parse_args()
    print(summarise(args.profile, args.top, args.thread))


if __name__ == "__main__":
    main()
