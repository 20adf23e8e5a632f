"""What the DMP needs of HTTP (exports POST, pulls GET), as protocols: the adapter over a real
client is at the edge (``web/outbound.py``), so the domain and its tests need no client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


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


class PullTransport(Protocol):
    async def get(
        self, url: str, params: Mapping[str, str], headers: Mapping[str, str], timeout: float
    ) -> HttpAnswer:
        """GET ``url?params``; raise TimeoutError or ConnectionError as ``post`` does."""
        ...
