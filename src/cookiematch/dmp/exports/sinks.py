"""Where batches go: an HTTP endpoint (signed JSON), the exchange's user list, or a file."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Protocol

import msgspec

from cookiematch.clock import Clock
from cookiematch.dmp.exports import signing
from cookiematch.dmp.exports.model import (
    Batch,
    BatchResult,
    Destination,
    ExchangeUserListDestination,
    FileDestination,
    FileFormat,
    HttpDestination,
    Mode,
)
from cookiematch.dmp.exports.retry import Attempts, Sleep, post_with_retry
from cookiematch.dmp.transport import HttpAnswer, Transport


class Sink(Protocol):
    async def open(self, segment: str, mode: Mode) -> None: ...

    async def send(self, batch: Batch) -> BatchResult: ...

    async def close(self, complete: bool) -> None: ...


def _decode(body: bytes) -> object:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None


def _outcome(
    attempts: Attempts, batch: Batch, rejected: Callable[[object], set[str]]
) -> BatchResult:
    answer = attempts.answer
    if answer is None or answer.status >= 500 or attempts.error is not None:
        return BatchResult(False, attempts=attempts.attempts, error=attempts.error)
    if answer.status >= 300:
        everything = frozenset(batch.add + batch.remove)
        return BatchResult(True, everything, attempts.attempts, _problem(answer))
    return BatchResult(True, frozenset(rejected(_decode(answer.body))), attempts.attempts)


def _problem(answer: HttpAnswer) -> str:
    data = _decode(answer.body)
    detail = data.get("detail") if isinstance(data, dict) else None
    return f"HTTP {answer.status}" + (f": {detail}" if isinstance(detail, str) else "")


class HttpSink:
    """POSTs each batch as signed JSON::

    {"batch_id", "segment", "destination", "partner", "mode", "add": [...], "remove": [...]}

    A 2xx answer may list refused IDs: ``{"rejected": ["id", {"id": "id", "reason": "..."}]}``.
    """

    def __init__(
        self,
        destination: HttpDestination,
        transport: Transport,
        *,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.destination = destination
        self._transport = transport
        self._clock = clock
        self._sleep = sleep
        self._rand = rand

    async def open(self, segment: str, mode: Mode) -> None:
        return None

    async def send(self, batch: Batch) -> BatchResult:
        dest = self.destination
        body = msgspec.json.encode(
            {
                "batch_id": batch.id,
                "segment": batch.segment,
                "destination": dest.id,
                "partner": dest.partner,
                "mode": batch.mode.value,
                "add": batch.add,
                "remove": batch.remove,
            }
        )

        def headers() -> Mapping[str, str]:
            return {
                "Content-Type": "application/json",
                signing.IDEMPOTENCY_HEADER: batch.id,
                **signing.sign(dest.secret, body, self._clock()),
            }

        attempts = await post_with_retry(
            self._transport,
            dest.url,
            body,
            headers,
            dest.delivery,
            sleep=self._sleep,
            rand=self._rand,
        )
        return _outcome(attempts, batch, _rejected_ids)

    async def close(self, complete: bool) -> None:
        return None


def _rejected_ids(data: object) -> set[str]:
    items = data.get("rejected") if isinstance(data, dict) else None
    found: set[str] = set()
    for item in items if isinstance(items, list) else ():
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict) and isinstance(item.get("id"), str):
            found.add(item["id"])
    return found


class ExchangeUserListSink:
    """``POST <url>/admin/v1/user_lists/<id>/members`` with the buyer's gids."""

    def __init__(
        self,
        destination: ExchangeUserListDestination,
        transport: Transport,
        *,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.destination = destination
        self._transport = transport
        self._sleep = sleep
        self._rand = rand
        base = destination.url.rstrip("/")
        self.url = f"{base}/admin/v1/user_lists/{destination.user_list_id}/members"

    async def open(self, segment: str, mode: Mode) -> None:
        return None

    async def send(self, batch: Batch) -> BatchResult:
        dest = self.destination
        body = msgspec.json.encode(
            {"nid": dest.nid, "cver": dest.cver, "gids": batch.add, "remove": batch.remove}
        )
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {dest.token}",
            signing.IDEMPOTENCY_HEADER: batch.id,
        }
        attempts = await post_with_retry(
            self._transport, self.url, body, lambda: headers, dest.delivery,
            sleep=self._sleep, rand=self._rand,
        )  # fmt: skip
        return _outcome(attempts, batch, _invalid_gids)

    async def close(self, complete: bool) -> None:
        return None


def _invalid_gids(data: object) -> set[str]:
    results = data.get("results") if isinstance(data, dict) else None
    return {
        r["gid"]
        for r in (results if isinstance(results, list) else ())
        if isinstance(r, dict) and r.get("status") == "invalid" and isinstance(r.get("gid"), str)
    }


class FileSink:
    """Writes ``<path>.partial`` and renames it to ``path`` once the export completed."""

    def __init__(self, destination: FileDestination, *, clock: Clock = time.time) -> None:
        self.destination = destination
        self._clock = clock
        self.path: Path | None = None
        self._file: IO[str] | None = None

    def file_path(self, segment: str, mode: Mode) -> Path:
        """The file of an export of ``segment`` now (its directory made)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        name = self.destination.path.format(
            segment=segment, destination=self.destination.id, time=stamp, mode=mode.value
        )
        path = Path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    async def open(self, segment: str, mode: Mode) -> None:
        self.path = self.file_path(segment, mode)
        self._file = open(f"{self.path}.partial", "w", newline="", encoding="utf-8")  # noqa: SIM115
        if self.destination.format is FileFormat.CSV:
            self._file.write("action,id\r\n")

    async def send(self, batch: Batch) -> BatchResult:
        assert self._file is not None, "open() first"
        out = io.StringIO()
        rows = [("add", i) for i in batch.add] + [("remove", i) for i in batch.remove]
        if self.destination.format is FileFormat.CSV:
            csv.writer(out).writerows(rows)
        else:
            for action, item in rows:
                out.write(msgspec.json.encode({"action": action, "id": item}).decode() + "\n")
        self._file.write(out.getvalue())
        return BatchResult(True)

    async def close(self, complete: bool) -> None:
        if self._file is None or self.path is None:
            return
        self._file.close()
        self._file = None
        if complete:
            publish(self.path)


def publish(path: Path) -> None:
    """Make ``<path>.partial``, written whole, the file ``path`` (synced, then renamed)."""
    partial = f"{path}.partial"
    with open(partial, "rb") as written:
        os.fsync(written.fileno())
    os.replace(partial, path)


def make_sink(destination: Destination, transport: Transport) -> Sink:
    """The sink that delivers to ``destination``."""
    if isinstance(destination, HttpDestination):
        return HttpSink(destination, transport)
    if isinstance(destination, ExchangeUserListDestination):
        return ExchangeUserListSink(destination, transport)
    return FileSink(destination)
