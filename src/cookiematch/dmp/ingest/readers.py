"""Partner data files: JSON Lines, CSV or TSV, plain or gzip, from paths or directories.

The format comes from the name (``.jsonl``/``.ndjson``/``.json``, ``.csv``, ``.tsv``, each
optionally ``.gz``) unless given. A directory stands for its files with those names, sorted
(not recursive). Files are read in batches of lines; each line keeps its 1-based number
(CSV: the header is line 1). ``progress`` hears the bytes read from disk (compressed bytes for
gzip), so a bar over the files' sizes ends at 100%.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

Format = Literal["jsonl", "csv", "tsv"]
FORMATS: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
}
Payload = bytes | dict[str, str | None]
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive lines of one file: ``(line number, JSON bytes or CSV row)``."""

    source: str
    lines: list[tuple[int, Payload]]


def detect_format(path: Path) -> Format | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return FORMATS.get(suffixes[-1]) if suffixes else None


def expand(paths: Sequence[Path], fmt: Format | None = None) -> list[Path]:
    """Files named, and the data files of directories named; raises ValueError if none."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and detect_format(p))
        elif fmt is None and detect_format(path) is None:
            raise ValueError(f"{path}: unknown format (name it .jsonl/.csv/.tsv[.gz] or give one)")
        else:
            found.append(path)
    if not found:
        raise ValueError("no data files found")
    return found


class _Counting(io.RawIOBase):
    """Reports how many bytes were read through it."""

    def __init__(self, raw: IO[bytes], progress: Progress | None) -> None:
        self._raw = raw
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n and self._progress is not None:
            self._progress(n)
        return int(n or 0)

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_data(path: Path, progress: Progress | None = None) -> IO[bytes]:
    """The file's bytes (decompressed when its name ends ``.gz``); ``progress`` hears the
    bytes read from disk."""
    raw = io.BufferedReader(_Counting(path.open("rb", buffering=0), progress), 1 << 20)
    if path.name.lower().endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def read_batches(
    path: Path, fmt: Format | None, size: int, progress: Progress | None = None
) -> Iterator[Batch]:
    """The file's lines in batches of ``size`` (blank lines skipped)."""
    fmt = fmt or detect_format(path) or "jsonl"
    source = str(path)
    with open_data(path, progress) as stream:
        if fmt == "jsonl":
            lines: list[tuple[int, Payload]] = []
            for number, line in enumerate(stream, 1):
                if line.strip():
                    lines.append((number, line))
                    if len(lines) >= size:
                        yield Batch(source, lines)
                        lines = []
            if lines:
                yield Batch(source, lines)
            return
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
        reader = csv.DictReader(text, delimiter="\t" if fmt == "tsv" else ",")
        rows: list[tuple[int, Payload]] = []
        for row in reader:
            rows.append((reader.line_num, row))
            if len(rows) >= size:
                yield Batch(source, rows)
                rows = []
        if rows:
            yield Batch(source, rows)
