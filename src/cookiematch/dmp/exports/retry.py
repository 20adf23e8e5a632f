"""POST with retries: exponential backoff with full jitter on 5xx, 408, 429 and timeouts.

The wait before retry n (1-based) is uniform in [0, min(max_backoff, backoff * 2^(n-1))]
(``cookiematch.retry.Backoff``); a ``Retry-After`` in seconds from the destination raises it,
up to max_backoff. Other 4xx answers are final.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from cookiematch.dmp.exports.model import Delivery
from cookiematch.dmp.transport import HttpAnswer, Transport
from cookiematch.retry import Backoff

Sleep = Callable[[float], Awaitable[None]]
RETRIED_STATUSES = frozenset({408, 425, 429})


def retryable(status: int) -> bool:
    return status >= 500 or status in RETRIED_STATUSES


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
    waits = Backoff(delivery.backoff_seconds, delivery.max_backoff_seconds, jitter=True)
    answer: HttpAnswer | None = None
    error: str | None = None
    for attempt in range(1, delivery.max_attempts + 1):
        if attempt > 1:
            hint = 0.0 if answer is None else _retry_after(answer)
            await sleep(waits.delay(attempt - 1, rand=rand, hint=hint))
        try:
            answer = await transport.post(url, body, headers(), delivery.timeout_seconds)
        except (TimeoutError, ConnectionError) as exc:
            answer, error = None, str(exc) or type(exc).__name__
            continue
        if not retryable(answer.status):
            return Attempts(answer, attempt, None)
        error = f"HTTP {answer.status}"
    return Attempts(answer, delivery.max_attempts, error)


def _retry_after(answer: HttpAnswer) -> float:
    """The answer's ``Retry-After`` in seconds (0 when absent or an HTTP date)."""
    value = {k.lower(): v for k, v in answer.headers.items()}.get("retry-after", "")
    return float(value) if value.isdigit() else 0.0
