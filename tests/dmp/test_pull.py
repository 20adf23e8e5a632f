"""Pulling pages from a partner endpoint (in process, behind the real ``PartnerTransport``)
into a real store."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from cookiematch.dmp import pull as pull_module
from cookiematch.dmp.ingest import Ingestor
from cookiematch.dmp.pull import Cursors, PullSource, pull
from cookiematch.dmp.service import DmpService
from cookiematch.errors import PullError
from cookiematch.retry import Backoff
from cookiematch.storage import Store
from cookiematch.web.outbound import PartnerTransport

from .helpers import FakeClock

SOURCE = PullSource("analytics", "https://partner.example/export", "t0ken", page_size=2)
PAGES = {
    None: {
        "records": [{"uid": "A-1", "attributes": {"n": 1}}, {"uid": "A-2"}],
        "next_cursor": "p2",
    },
    "p2": {"records": [{"uid": "A-1", "attributes": {"n": 2}}, {"bad": 1}], "next_cursor": "p3"},
    "p3": {"records": [{"uid": "A-3", "attributes": {"n": 3}}], "next_cursor": None},
}


def partner_transport(partner: Partner) -> PartnerTransport:
    """The real adapter over a client that reaches ``partner`` in process."""
    return PartnerTransport(httpx.AsyncClient(transport=httpx.MockTransport(partner)))


class Partner:
    """The partner's endpoint: pages by cursor; ``fail`` answers this status for a cursor."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []
        self.fail: dict[str | None, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer t0ken"
        assert request.url.params["limit"] == "2"
        cursor = request.url.params.get("cursor")
        self.seen.append(cursor)
        if cursor in self.fail:
            return httpx.Response(self.fail[cursor])
        return httpx.Response(200, content=msgspec.json.encode(PAGES[cursor]))


async def test_pull_pages_resumes_and_stores_the_cursor(
    ingestor: Ingestor, service: DmpService, store: Store, clock: FakeClock
) -> None:
    for uid, dmp_uid in (("A-1", "d1"), ("A-3", "d3")):
        await service.matches.record("analytics", dmp_uid, uid, clock())
    partner = Partner()
    partner.fail["p3"] = 404
    cursors = Cursors(store)
    async with PartnerTransport(
        httpx.AsyncClient(transport=httpx.MockTransport(partner))
    ) as client:
        with pytest.raises(PullError, match="HTTP 404"):
            await pull(SOURCE, ingestor, cursors, client)
        assert await cursors.get("analytics") == "p3"  # pages 1-2 are done
        del partner.fail["p3"]
        report = await pull(SOURCE, ingestor, cursors, client)
    assert partner.seen == [None, "p2", "p3", "p3"]
    assert report.pages == 1 and report.ingest is not None and report.ingest.accepted == 1
    assert await cursors.get("analytics") == "p3"  # the end: asked again from there next time
    assert (await service.profile_reader.snapshot("d1")).attributes == {"n": 2}
    assert (await service.profile_reader.snapshot("d3")).attributes == {"n": 3}


async def test_pull_retries_server_errors(
    ingestor: Ingestor, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pull_module, "BACKOFF", Backoff(0.001, 0.008))
    partner = Partner()
    partner.fail[None] = 503
    async with PartnerTransport(
        httpx.AsyncClient(transport=httpx.MockTransport(partner))
    ) as client:
        with pytest.raises(PullError, match="HTTP 503 \\(after 5 attempts\\)"):
            await pull(SOURCE, ingestor, Cursors(store), client)
    assert partner.seen == [None] * 5


async def test_pull_refuses_a_page_that_is_not_records(ingestor: Ingestor, store: Store) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"[1, 2]"))
    async with PartnerTransport(httpx.AsyncClient(transport=transport)) as client:
        with pytest.raises(PullError, match="not a page of records"):
            await pull(SOURCE, ingestor, Cursors(store), client)
