"""POST with retries: exponential backoff with full jitter on 5xx, 408, 429 and timeouts.

The wait before retry n (1-based) is uniform in [0, min(max_backoff, backoff * 2^(n-1))];
a ``Retry-After`` in seconds from the destination raises it. Other 4xx answers are final.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from cookiematch.dmp.exports.model import Delivery
from cookiematch.dmp.exports.transport import HttpAnswer, Transport

Sleep = Callable[[float], Awaitable[None]]
RETRIED_STATUSES = frozenset({408, 425, 429})


def retryable(status: int) -> bool:
    return status >= 500 or status in RETRIED_STATUSES


def backoff(delivery: Delivery, retry: int, rand: Callable[[], float]) -> float:
    ceiling: float = min(
        delivery.max_backoff_seconds, delivery.backoff_seconds * 2.0 ** (retry - 1)
    )
    return float(ceiling * rand())


@dataclass(frozen=True, slots=True)
class Attempts:
    answer: HttpAnswer | None  # the last answer; None when the last attempt got none
    attempts: int
    error: str | None  # why the last attempt failed, if it did


async def post_with_retry(
    transport: Transport,
    url: str,
    body: bytes,
    headers: Callable[[], Mapping[str, str]],
    delivery: Delivery,
    *,
    sleep: Sleep = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> Attempts:
    """POST until a final answer or ``max_attempts``; ``headers()`` is called per attempt."""
    answer: HttpAnswer | None = None
    error: str | None = None
    for attempt in range(1, delivery.max_attempts + 1):
        if attempt > 1:
            wait = backoff(delivery, attempt - 1, rand)
            if answer is not None:
                wait = max(wait, _retry_after(answer, delivery))
            await sleep(wait)
        try:
            answer = await transport.post(url, body, headers(), delivery.timeout_seconds)
        except (TimeoutError, ConnectionError) as exc:
            answer, error = None, str(exc) or type(exc).__name__
            continue
        if not retryable(answer.status):
            return Attempts(answer, attempt, None)
        error = f"HTTP {answer.status}"
    return Attempts(answer, delivery.max_attempts, error)


def _retry_after(answer: HttpAnswer, delivery: Delivery) -> float:
    value = {k.lower(): v for k, v in answer.headers.items()}.get("retry-after", "")
    return min(float(value), delivery.max_backoff_seconds) if value.isdigit() else 0.0
