"""JSON Lines framed by the engine's own CSV reader, when it frames them as
``ingest/readers.py`` does: one pass over the bytes (decompressed) checks first.

``readers.read_batches`` splits a JSON Lines file at LF only, numbers every line from 1 and
skips the blank ones (counted). DuckDB's CSV reader, given one column, no quote, no escape, a
delimiter the file lacks and the file's own line ending, returns every line in order, blank
ones as NULL, so ``row_number()`` is the line's number. It splits at a lone CR and takes one
line ending per file, so a file with a CR not before an LF, with both LF and CRLF endings, or
with a NUL or the delimiter byte is framed in Python instead (``LineEnds`` is None); so is a
file the reader refuses (not UTF-8) or whose line count differs from the one counted here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cookiematch.dmp.ingest.readers import Progress, open_data

DELIMITER = "\x01"
"""The CSV reader's delimiter: a byte a file framed by the engine must not hold."""
SCAN_BYTES = 16 << 20  # bytes checked at a time
MAX_LINE_BYTES = 4 << 20  # the longest line the reader takes (a longer one: framed in Python)
BLANK = " \t\n\r\x0b\x0c"
"""What ``bytes.strip()`` removes: a line of only these is blank."""


@dataclass(frozen=True, slots=True)
class LineEnds:
    """A file the engine may frame: its line ending, and how many lines it has (blank ones
    included; a last line without an ending counts)."""

    newline: str
    lines: int


def line_ends(path: Path, progress: Progress | None = None) -> LineEnds | None:
    """How ``path``'s lines end, or None when the file must be framed in Python."""
    lf = cr = crlf = 0
    last = b""
    with open_data(path, progress) as stream:
        while block := stream.read(SCAN_BYTES):
            if b"\x00" in block or DELIMITER.encode() in block:
                return None
            lf += block.count(b"\n")
            if b"\r" in block or last == b"\r":  # most files have none: one pass less
                cr += block.count(b"\r")
                crlf += block.count(b"\r\n") + (last == b"\r" and block[:1] == b"\n")
            last = block[-1:]
    if cr != crlf or (crlf and crlf != lf):
        return None
    lines = lf + (last not in (b"", b"\n"))
    return LineEnds("\r\n" if crlf else "\n", lines)


def read_csv_sql(compressed: bool, newline: str) -> str:
    """SQL: the lines of the file ``$path`` as ``(line, body)``, ``body`` '' for an empty line."""
    newline_option = "\\r\\n" if newline == "\r\n" else "\\n"
    return f"""SELECT (row_number() OVER ())::INTEGER AS line, coalesce(body, '') AS body
      FROM read_csv($path, columns = {{'body': 'VARCHAR'}}, delim = '{DELIMITER}', quote = '',
                    escape = '', header = false, auto_detect = false,
                    max_line_size = {MAX_LINE_BYTES}, new_line = '{newline_option}',
                    compression = '{"gzip" if compressed else "none"}')"""
