"""Export POSTs: the waits between attempts (full jitter, Retry-After) come from the backoff."""

from __future__ import annotations

from collections.abc import Mapping

from cookiematch.dmp.exports import Delivery
from cookiematch.dmp.exports.retry import post_with_retry
from cookiematch.dmp.transport import HttpAnswer


class Answers:
    """Answers ``(status, headers)`` in order, then 200."""

    def __init__(self, *answers: tuple[int, dict[str, str]]) -> None:
        self.answers = list(answers)

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpAnswer:
        status, answer_headers = self.answers.pop(0) if self.answers else (200, {})
        return HttpAnswer(status, b"{}", answer_headers)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_retry_after_raises_the_wait_up_to_max_backoff() -> None:
    transport = Answers(
        (429, {"Retry-After": "7"}),
        (503, {"retry-after": "3600"}),
        (503, {"Retry-After": "1"}),
        (503, {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}),
    )
    sleeps = Sleeps()
    delivery = Delivery(max_attempts=5, backoff_seconds=0.5, max_backoff_seconds=30.0)
    attempts = await post_with_retry(
        transport, "http://d/", b"{}", lambda: {}, delivery, sleep=sleeps, rand=lambda: 1.0
    )
    assert attempts.attempts == 5 and attempts.error is None
    # backoff ceilings 0.5, 1, 2, 4; Retry-After 7 raises the first, 3600 is capped at 30,
    # 1 is below the backoff, and a date is not honoured
    assert sleeps.waits == [7.0, 30.0, 2.0, 4.0]


async def test_waits_are_drawn_below_the_doubling_ceiling() -> None:
    transport = Answers(*[(500, {})] * 4)
    sleeps = Sleeps()
    delivery = Delivery(max_attempts=5, backoff_seconds=0.5, max_backoff_seconds=1.5)
    await post_with_retry(
        transport, "http://d/", b"{}", lambda: {}, delivery, sleep=sleeps, rand=lambda: 0.5
    )
    assert sleeps.waits == [0.25, 0.5, 0.75, 0.75]
