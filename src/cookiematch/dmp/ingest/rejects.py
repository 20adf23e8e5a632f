"""Refused records, as JSON Lines: ``{"source", "line", "reason", "raw"}``, one per line; and
each reason's short code, as the funnel counts rejects (``reject_code``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

import msgspec

from cookiematch.dmp.ingest.readers import Payload

MAX_RAW = 4096  # characters of the refused input kept in the rejects
EXTRA_CELLS = ""  # the key of a CSV row's cells beyond its header, in a reject's ``raw``
REASON_CODES = (
    ("consent:", "consent"),  # pipeline.CONSENT_REASON
    ("uid:", "uid"),
    ("not JSON", "not_json"),
    ("more than", "too_large"),
    ("attributes", "attribute"),
    ("events[", "event"),
    ("ts:", "event"),
    ("remove:", "remove"),
)
"""A reason's code by how ``ingest/records.py`` words it; any other reason (the record's shape,
a CSV row or cell) is ``malformed``."""


def reject_code(reason: str) -> str:
    for prefix, code in REASON_CODES:
        if reason.startswith(prefix):
            return code
    return "malformed"


@dataclass(frozen=True, slots=True)
class Reject:
    source: str  # a file name, or "request"
    line: int  # 1-based line (files) or 0-based index (HTTP batches)
    reason: str
    raw: str


def reject(source: str, line: int, reason: str, payload: Payload) -> Reject:
    if isinstance(payload, bytes):
        raw = payload.decode("utf-8", "replace").rstrip("\r\n")
    else:  # a CSV row; cells beyond the header come under the key None (``csv.DictReader``)
        raw = msgspec.json.encode(
            {EXTRA_CELLS if k is None else k: v for k, v in payload.items()}
        ).decode()
    return Reject(source, line, reason, raw[:MAX_RAW])


class RejectsWriter:
    """Writes rejects to a text stream (a file, or stderr) as they come."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.written = 0

    def write(self, item: Reject) -> None:
        self._stream.write(msgspec.json.encode(item).decode() + "\n")
        self.written += 1

    def flush(self) -> None:
        self._stream.flush()
