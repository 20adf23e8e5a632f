"""HTTP for exports: a small protocol (so tests and the domain need no client) and httpx."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    body: bytes
    headers: Mapping[str, str]


class Transport(Protocol):
    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpAnswer:
        """POST; raise TimeoutError on a timeout and ConnectionError when unreachable."""
        ...


class HttpxTransport:
    """One shared ``httpx.AsyncClient``."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self.client = client or httpx.AsyncClient(follow_redirects=False)

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpAnswer:
        try:
            answer = await self.client.post(
                url, content=body, headers=dict(headers), timeout=timeout
            )
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"{url}: timed out") from exc
        except httpx.TransportError as exc:
            raise ConnectionError(f"{url}: {exc}") from exc
        return HttpAnswer(answer.status_code, answer.content, dict(answer.headers))

    async def aclose(self) -> None:
        await self.client.aclose()
