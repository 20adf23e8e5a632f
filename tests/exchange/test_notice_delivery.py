"""Delivery of opt-out notices to a real HTTP receiver that checks each signature, through the
real transport, over a real SQLite store: delivered, retried with backoff, abandoned, and
never sent twice at once by two workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.exchange.model import Buyer, ExchangeSettings
from cookiematch.exchange.notice_delivery import NoticeDelivery, NoticeEvent
from cookiematch.exchange.optout_notices import NoticeQueue
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.secret import Secret
from cookiematch.storage import Store, open_store
from cookiematch.web.outbound import NoticeTransport

from .notice_receiver import NoticeReceiver, receiving
from conftest import free_port
from support.clock import FakeClock

SECRET = "webhook-secret-0123456789"
CIPHER = UserIdCipher({1: b"1" * 32})
SETTINGS = ExchangeSettings(
    optout_notice_retry_first_seconds=10,
    optout_notice_retry_max_seconds=60,
    optout_notice_give_up_days=7,
)
BROWSERS = [bytes([n]) * 16 for n in range(1, 6)]


def buyer(nid: str, url: str | None) -> Buyer:
    return Buyer(
        nid,
        RedirectTemplate.compile(f"https://{nid}.example/cm?id="),
        optout_webhook_url=url,
        optout_webhook_secret=Secret(SECRET) if url else None,
    )


class Events:
    def __init__(self) -> None:
        self.counted: list[tuple[str, NoticeEvent]] = []
        self.depth: dict[str, int] = {}

    def count(self, nid: str, event: NoticeEvent) -> None:
        self.counted.append((nid, event))

    def of(self, event: NoticeEvent) -> int:
        return sum(1 for _, e in self.counted if e is event)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(float(int(time.time())))


@pytest.fixture
def receiver(clock: FakeClock) -> Iterator[NoticeReceiver]:
    with receiving(NoticeReceiver(SECRET.encode(), now=clock)) as started:
        yield started


@pytest.fixture
async def transport() -> AsyncIterator[NoticeTransport]:
    opened = NoticeTransport()
    yield opened
    await opened.aclose()


def queue_over(store: Store, clock: FakeClock) -> NoticeQueue:
    ids = iter(range(10_000))
    return NoticeQueue(store, CIPHER, SETTINGS, clock=clock, new_id=lambda: f"n{next(ids)}")


def delivery(
    store: Store,
    queue: NoticeQueue,
    buyers: Sequence[Buyer],
    transport: NoticeTransport,
    clock: FakeClock,
    events: Events,
    holder: str = "worker-1",
) -> NoticeDelivery:
    by_nid = {b.nid: b for b in buyers}
    return NoticeDelivery(
        queue, store, by_nid.get, transport, SETTINGS, clock=clock, holder=holder,
        rand=lambda: 0.5, on_event=events.count, on_depth=events.depth.__setitem__,
    )  # fmt: skip


async def test_delivered_signed_then_removed(
    store: Store, clock: FakeClock, receiver: NoticeReceiver, transport: NoticeTransport
) -> None:
    dsp = buyer("dsp", receiver.url)
    queue, events = queue_over(store, clock), Events()
    assert await queue.enqueue(BROWSERS[0], [dsp, buyer("silent", None)]) == ["dsp"]
    await delivery(store, queue, [dsp], transport, clock, events).deliver_due()
    [notice] = receiver.notices
    assert receiver.refused == 0
    assert notice.nid == "dsp" and notice.time == int(clock.now)
    assert notice.google_gids == [CIPHER.encrypt(BROWSERS[0], "dsp", 1)]
    assert await queue.pending("dsp") == []
    assert events.of(NoticeEvent.DELIVERED) == 1 and events.depth == {"dsp": 0}


async def test_a_failed_attempt_is_retried_after_its_backoff(
    store: Store, clock: FakeClock, receiver: NoticeReceiver, transport: NoticeTransport
) -> None:
    dsp = buyer("dsp", receiver.url)
    queue, events = queue_over(store, clock), Events()
    await queue.enqueue(BROWSERS[0], [dsp])
    worker = delivery(store, queue, [dsp], transport, clock, events)
    receiver.status = 503
    await worker.deliver_due()
    [waiting] = await queue.pending("dsp")
    # full jitter below the first ceiling (10 s): rand 0.5 waits 5 s
    assert waiting.attempts == 1 and waiting.next_attempt_at == clock.now + 5
    await worker.deliver_due()  # not due yet: not sent again
    assert receiver.posts == 1
    clock.advance(5)
    await worker.deliver_due()
    [waiting] = await queue.pending("dsp")
    assert waiting.attempts == 2 and waiting.next_attempt_at == clock.now + 10  # ceiling 20
    receiver.status = 204
    clock.advance(10)
    await worker.deliver_due()
    assert len(receiver.notices) == 1 and await queue.pending("dsp") == []
    assert events.of(NoticeEvent.FAILED_ATTEMPT) == 2 and events.of(NoticeEvent.DELIVERED) == 1


async def test_unreachable_and_webhookless_buyers_fail_until_abandoned(
    store: Store, clock: FakeClock, transport: NoticeTransport
) -> None:
    down = buyer("down", f"http://127.0.0.1:{free_port()}/optout")  # nothing listens there
    queue, events = queue_over(store, clock), Events()
    await queue.enqueue(BROWSERS[0], [down, buyer("removed", "https://removed.example/o")])
    # "removed" is no longer in the worker's view: its notice fails without a POST
    worker = delivery(store, queue, [down], transport, clock, events)
    await worker.deliver_due()
    assert events.of(NoticeEvent.FAILED_ATTEMPT) == 2
    clock.advance(7 * DAY)
    await worker.deliver_due()
    assert events.of(NoticeEvent.ABANDONED) == 2
    assert await queue.pending("down") == [] and await queue.pending("removed") == []


async def test_two_workers_never_send_the_same_notice_at_once(
    tmp_path: Path, clock: FakeClock, receiver: NoticeReceiver, transport: NoticeTransport
) -> None:
    receiver.delay = 0.05  # rounds overlap
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    one, two = open_store(url, clock=clock), open_store(url, clock=clock)
    try:
        dsp = buyer("dsp", receiver.url)
        queue_one, queue_two = queue_over(one, clock), queue_over(two, clock)
        for browser_id in BROWSERS:
            await queue_one.enqueue(browser_id, [dsp])
        events = Events()
        workers = [
            delivery(one, queue_one, [dsp], transport, clock, events, holder="w1"),
            delivery(two, queue_two, [dsp], transport, clock, events, holder="w2"),
        ]
        for _ in range(3):
            await asyncio.gather(*(worker.deliver_due() for worker in workers))
        assert sorted(receiver.ids()) == sorted(f"n{i}" for i in range(len(BROWSERS)))
        assert receiver.posts == len(BROWSERS)  # each sent once, by whichever held the lease
        assert events.of(NoticeEvent.DELIVERED) == len(BROWSERS)
    finally:
        await one.close()
        await two.close()
