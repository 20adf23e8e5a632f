"""Pulling a partner's records from its HTTP endpoint, page by page, resumably.

    GET <pull_url>?limit=<page size>[&cursor=<cursor>]   Authorization: Bearer <pull_token>
    200 {"records": [record, ...], "next_cursor": "<opaque>" | null}

Each page is ingested, then its ``next_cursor`` is stored (``{dmp:pull}:<partner>``), so a run
that stops resumes after the last page it finished. ``next_cursor`` null (or unchanged) ends a
run; the cursor stays where it was, so the next run asks again from there and gets what the
partner added since (a page read twice changes nothing: ingestion is idempotent). Transport
errors and 429/5xx answers are retried with backoff; anything else is a PullError.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import msgspec

from cookiematch.dmp import keys
from cookiematch.dmp.ingest import Ingestor, IngestReport
from cookiematch.dmp.ingest.pipeline import OnReject
from cookiematch.dmp.ingest.readers import Batch
from cookiematch.dmp.transport import PullTransport
from cookiematch.errors import PullError
from cookiematch.retry import Backoff
from cookiematch.storage.base import Store

RETRIES = 4
BACKOFF = Backoff(0.5, 4.0)  # 0.5 s, doubled per retry: 0.5, 1, 2, 4
PAGE_TIMEOUT = 30.0  # seconds for one page


class Page(msgspec.Struct):
    records: list[msgspec.Raw]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class PullSource:
    partner_id: str
    url: str
    token: str | None = None
    page_size: int = 1000
    timeout: float = PAGE_TIMEOUT


@dataclass(slots=True)
class PullReport:
    pages: int = 0
    cursor: str | None = None
    ingest: IngestReport | None = None


_page = msgspec.json.Decoder(Page)


class Cursors:
    """The stored cursor of each partner's endpoint."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, partner_id: str) -> str | None:
        raw = await self._store.get(keys.pull_cursor_key(partner_id))
        return None if raw is None else raw.decode()

    async def set(self, partner_id: str, cursor: str) -> None:
        await self._store.set(keys.pull_cursor_key(partner_id), cursor.encode())


async def fetch_page(transport: PullTransport, source: PullSource, cursor: str | None) -> Page:
    params = {"limit": str(source.page_size)}
    if cursor is not None:
        params["cursor"] = cursor
    headers = {"Authorization": f"Bearer {source.token}"} if source.token else {}
    for attempt in range(RETRIES + 1):
        try:
            answer = await transport.get(source.url, params, headers, source.timeout)
        except (TimeoutError, ConnectionError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if answer.status == 200:
                try:
                    return _page.decode(answer.body)
                except msgspec.DecodeError as exc:
                    raise PullError(f"{source.url}: not a page of records: {exc}") from None
            problem = f"HTTP {answer.status}"
            if answer.status != 429 and answer.status < 500:
                raise PullError(f"{source.url}: {problem}")
        if attempt < RETRIES:
            await asyncio.sleep(BACKOFF.delay(attempt + 1))
    raise PullError(f"{source.url}: {problem} (after {RETRIES + 1} attempts)")


async def pull(
    source: PullSource,
    ingestor: Ingestor,
    cursors: Cursors,
    transport: PullTransport,
    *,
    max_pages: int | None = None,
    on_reject: OnReject | None = None,
) -> PullReport:
    """One run: pages from the stored cursor until the partner has no more (or max_pages)."""
    report = PullReport(ingest=IngestReport())
    assert report.ingest is not None
    cursor = await cursors.get(source.partner_id)
    while max_pages is None or report.pages < max_pages:
        page = await fetch_page(transport, source, cursor)
        report.pages += 1
        lines: list[tuple[int, bytes | dict[str, str | None]]] = [
            (i, bytes(raw)) for i, raw in enumerate(page.records)
        ]
        name = f"{source.url} page {report.pages}"
        batch = await ingestor.batch(source.partner_id, Batch(name, lines), on_reject)
        report.ingest.add(batch)
        if page.next_cursor is None or page.next_cursor == cursor:
            break
        cursor = page.next_cursor
        await cursors.set(source.partner_id, cursor)
    report.cursor = cursor
    return report
