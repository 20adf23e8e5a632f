"""Dealing batches out to ingest workers: every record of a partner uid goes to one worker.

Workers apply their records in file order, so a partner uid's records stay in order when
each uid has one worker. The uid is read without validating the record (the worker does
that and rejects what is bad); a line whose uid cannot be read goes to a worker chosen by
its line number, which rejects it with the reason.

Lines are gathered per worker until a worker has a batch of ``size`` records, so workers
write batches as large as a single process would (a store pays per batch, not per record).
A batch never mixes files: a new file sends what is gathered first.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

import msgspec

from cookiematch.dmp.ingest.readers import Batch, Payload


class _Keyed(msgspec.Struct):
    uid: str


_read_uid = msgspec.json.Decoder(_Keyed).decode


def worker_of(uid: str, workers: int) -> int:
    """The worker that takes ``uid``'s records (the same in every run and process)."""
    return zlib.crc32(uid.encode("utf-8", "surrogatepass")) % workers


def _worker_of_line(number: int, payload: Payload, workers: int) -> int:
    try:
        uid = _read_uid(payload).uid if isinstance(payload, bytes) else payload.get("uid") or ""
    except (msgspec.DecodeError, msgspec.ValidationError):
        return number % workers
    return worker_of(uid, workers) if uid else number % workers


def deal(batches: Iterable[Batch], workers: int, size: int) -> Iterator[tuple[int, Batch]]:
    """``(worker, batch)`` pairs: the records of ``batches`` dealt by partner uid, at most
    ``size`` per batch; a worker's batches come in file order."""
    gathered: list[list[tuple[int, Payload]]] = [[] for _ in range(workers)]
    source: str | None = None
    for batch in batches:
        if batch.source != source:
            if source is not None:
                yield from _gathered(source, gathered)
            source = batch.source
        for number, payload in batch.lines:
            worker = _worker_of_line(number, payload, workers)
            lines = gathered[worker]
            lines.append((number, payload))
            if len(lines) >= size:
                gathered[worker] = []
                yield worker, Batch(source, lines)
    if source is not None:
        yield from _gathered(source, gathered)


def _gathered(
    source: str, gathered: list[list[tuple[int, Payload]]]
) -> Iterator[tuple[int, Batch]]:
    for worker, lines in enumerate(gathered):
        if lines:
            gathered[worker] = []
            yield worker, Batch(source, lines)
