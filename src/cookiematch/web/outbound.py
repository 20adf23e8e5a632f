"""Outbound HTTP: every client cookiematch opens, in one module at the edge.

The domain never imports an HTTP client; it declares what it needs as a ``Transport``
protocol and the composition roots hand it one of these adapters, each over one shared
``httpx.AsyncClient`` (keep-alive, bounded pool, no redirects followed):

    BidTransport       the exchange's OpenRTB bid requests and win notices
                       (``exchange.auction.BidTransport``)
    PartnerTransport   the DMP's exports (POST) and pulls (GET) (``dmp.exports.transport``)
    NoticeTransport    the exchange's opt-out notices to buyers' webhooks (POST)
                       (``exchange.notice_delivery.NoticeTransport``)

Each turns a timeout into ``TimeoutError`` and any other failure of the exchange with the peer
(unreachable, refused, a body that does not decode) into ``ConnectionError``, and counts and
times every call by kind and host (``web/outbound_metrics.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from time import perf_counter
from typing import Self

import httpx

from cookiematch.dmp.transport import HttpAnswer
from cookiematch.web.outbound_metrics import record_outbound

__all__ = ["BidTransport", "NoticeTransport", "PartnerTransport"]

log = logging.getLogger(__name__)

WIN_NOTICE_TIMEOUT = 2.0


async def _answer(kind: str, url: str, request: Awaitable[httpx.Response]) -> httpx.Response:
    """``request``'s response, counted and timed; a timeout is ``TimeoutError``, any other
    failure ``ConnectionError``."""
    started = perf_counter()
    try:
        response = await request
    except httpx.TimeoutException as exc:
        record_outbound(kind, url, "timeout", perf_counter() - started)
        raise TimeoutError(f"{url}: timed out") from exc
    except httpx.HTTPError as exc:  # unreachable, refused, a body that does not decode...
        record_outbound(kind, url, "error", perf_counter() - started)
        raise ConnectionError(f"{url}: {exc}") from exc
    record_outbound(kind, url, response.status_code, perf_counter() - started)
    return response


class BidTransport:
    """Bid requests over one shared client; win notices fired in the background."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self.client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            headers={"Content-Type": "application/json", "x-openrtb-version": "2.6"},
            follow_redirects=False,
        )
        self._notices: set[asyncio.Task[None]] = set()

    async def post(self, url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        response = await _answer("bid", url, self.client.post(url, content=body, timeout=timeout))
        return response.status_code, response.content

    def notify(self, url: str) -> None:
        """Fire the win notice (``nurl``) in the background; its answer is ignored."""
        task = asyncio.get_running_loop().create_task(self._get(url))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _get(self, url: str) -> None:
        try:
            await _answer("win_notice", url, self.client.get(url, timeout=WIN_NOTICE_TIMEOUT))
        except Exception as exc:
            log.info("win notice to %s failed: %s", url, exc)

    async def aclose(self) -> None:
        for task in list(self._notices):
            task.cancel()
        await self.client.aclose()


class PartnerTransport:
    """Requests to DMP partners and destinations over one shared client."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self.client = client or httpx.AsyncClient(follow_redirects=False)

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpAnswer:
        return await self._send("POST", url, headers, timeout, content=body)

    async def get(
        self,
        url: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        timeout: float,
    ) -> HttpAnswer:
        return await self._send("GET", url, headers, timeout, params=dict(params))

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        timeout: float,
        *,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> HttpAnswer:
        request = self.client.request(
            method, url, content=content, params=params, headers=dict(headers), timeout=timeout
        )
        answer = await _answer("partner", url, request)
        return HttpAnswer(answer.status_code, answer.content, dict(answer.headers))

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class NoticeTransport:
    """Opt-out notices POSTed to buyers' webhooks over one shared client; answers the status."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self.client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
            follow_redirects=False,
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        request = self.client.post(url, content=body, headers=dict(headers), timeout=timeout)
        return (await _answer("optout_notice", url, request)).status_code

    async def aclose(self) -> None:
        await self.client.aclose()
