"""Access and erasure of one browser on every store backend: SQLite, Redis and Redis Cluster
(real servers), with the notices it queues for the buyers."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.errors import InvalidSubject
from cookiematch.exchange import keys
from cookiematch.exchange.browser_record import browser_record_key
from cookiematch.exchange.hosted_nids import HOSTED_NIDS_KEY, HostedNids
from cookiematch.exchange.model import Buyer, ExchangeSettings
from cookiematch.exchange.optout_notices import NoticeQueue
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.exchange.subjects import KINDS, ExchangeSubjects
from cookiematch.protocol.cookies import format_browser_id
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.secret import Secret
from cookiematch.storage import Store

from support.stores import backend_store, shared_cluster, shared_redis  # noqa: F401

BROWSER = bytes(range(16))
OTHER = bytes(range(1, 17))
SUBJECT = format_browser_id(BROWSER)
CIPHER = UserIdCipher({1: b"1" * 32, 2: b"2" * 32})
SETTINGS = ExchangeSettings(hosted_match_ttl_days=90)
PREFIXES = ("hm:", "ul:", "pm:", "br:", "pu:")


def buyer(nid: str, *, hosted: bool = False, webhook: bool = False) -> Buyer:
    return Buyer(
        nid,
        RedirectTemplate.compile(f"https://{nid}.example/cm?id="),
        hosted_match=hosted,
        pixel_matching=hosted,
        optout_webhook_url=f"https://{nid}.example/optout" if webhook else None,
        optout_webhook_secret=Secret("s" * 16) if webhook else None,
    )


HOSTED = buyer("hosted-dsp", hosted=True, webhook=True)
PLAIN = buyer("plain-dsp")
GONE = buyer("gone-dsp", hosted=True)  # hosted once, then removed from the registry


@pytest.fixture
def store(backend_store: Store) -> Store:  # noqa: F811 (the fixture, by name)
    return backend_store


def subjects_over(store: Store, buyers: Sequence[Buyer]) -> ExchangeSubjects:
    ids = iter(range(1000))

    async def current() -> Sequence[Buyer]:
        return buyers

    queue = NoticeQueue(
        store, CIPHER, SETTINGS, clock=time.time, new_id=lambda: f"notice-{next(ids)}"
    )
    return ExchangeSubjects(store, HostedNids(store, SETTINGS, clock=time.time), queue, current)


async def write_browser(store: Store, browser_id: bytes, now: int) -> None:
    """What the exchange writes about a browser: hosted data of two buyers, a user list, a
    pixel match with the push token's mark and its browser record."""
    await store.set(keys.hosted_match_key(browser_id, HOSTED.nid), b"buyer's text", ttl=90 * DAY)
    await store.set(keys.hosted_match_key(browser_id, GONE.nid), b"\xff\x00", ttl=30 * DAY)
    await store.hset(keys.user_lists_key(browser_id), {"12345": str(now).encode()}, ttl=DAY)
    await store.hset(keys.pixel_matches_key(browser_id), {HOSTED.nid: b"%d" % now}, ttl=DAY)
    await store.set(keys.push_return_key(browser_id, HOSTED.nid), b"%d" % now, ttl=3600)
    record = {"created": b"%d" % now, f"gid:{HOSTED.nid}": b"%d" % now}
    await store.hset(browser_record_key(browser_id), record, ttl=DAY)


async def count_keys(store: Store, browser_id: bytes) -> int:
    """Plain keys and field maps of the browser, found by scanning every exchange prefix."""
    tag = keys.browser_tag(browser_id)
    found = 0
    for prefix in PREFIXES:
        found += len([key async for key, _ in store.scan(prefix + tag)])
        found += len([key async for key, _ in store.scan_maps(prefix + tag)])
    return found


async def test_access_shows_every_record_readably(store: Store) -> None:
    # the removed buyer was recorded while it was a hosted buyer
    await HostedNids(store, SETTINGS, clock=time.time).note([GONE])
    await write_browser(store, BROWSER, 1_700_000_000)
    report = await subjects_over(store, [HOSTED, PLAIN]).access(SUBJECT)
    assert report.role == "exchange" and report.subject == SUBJECT
    shown = {(r.kind, r.key, r.field): r.value for r in report.records}
    tag = keys.browser_tag(BROWSER)
    assert shown == {
        ("hosted_match", f"hm:{tag}:gone-dsp", None): {"base64": "/wA="},
        ("hosted_match", f"hm:{tag}:hosted-dsp", None): "buyer's text",
        ("user_list", f"ul:{tag}", "12345"): "2023-11-14T22:13:20Z",
        ("pixel_match", f"pm:{tag}", "hosted-dsp"): "2023-11-14T22:13:20Z",
        ("browser_record", f"br:{tag}", "created"): "2023-11-14T22:13:20Z",
        ("browser_record", f"br:{tag}", "gid:hosted-dsp"): "2023-11-14T22:13:20Z",
        ("push_return", f"pu:{tag}:hosted-dsp", None): "2023-11-14T22:13:20Z",
    }
    lifetimes = {r.key: r.expires_in_seconds for r in report.records if r.field is None}
    assert lifetimes[f"hm:{tag}:hosted-dsp"] == pytest.approx(90 * DAY, abs=60)
    assert lifetimes[f"hm:{tag}:gone-dsp"] == pytest.approx(30 * DAY, abs=60)
    assert all(r.expires_in_seconds is not None for r in report.records)


async def test_erasure_leaves_nothing_and_queues_the_notices(store: Store) -> None:
    await HostedNids(store, SETTINGS, clock=time.time).note([GONE])
    await write_browser(store, BROWSER, int(time.time()))
    await write_browser(store, OTHER, int(time.time()))
    assert await count_keys(store, BROWSER) == 6

    data = subjects_over(store, [HOSTED, PLAIN])
    report = await data.erase(SUBJECT)
    assert report.erased == {
        "hosted_match": 2,
        "user_list": 1,
        "pixel_match": 1,
        "browser_record": 1,
        "push_return": 1,
    }
    assert report.notified == [HOSTED.nid]  # the only buyer with a webhook
    assert await count_keys(store, BROWSER) == 0
    assert await count_keys(store, OTHER) == 6  # another browser keeps its data
    assert (await data.access(SUBJECT)).records == []

    [queued] = await data.notices.pending(HOSTED.nid)
    notice = queued.notice
    assert notice.nid == HOSTED.nid and notice.id == "notice-0"
    # the gid under every key version the cipher holds, the current one first
    assert notice.google_gids == [
        CIPHER.encrypt(BROWSER, HOSTED.nid, 2),
        CIPHER.encrypt(BROWSER, HOSTED.nid, 1),
    ]
    assert CIPHER.decrypt(notice.google_gids[1], HOSTED.nid, 1) == BROWSER
    assert await data.notices.nids() == [HOSTED.nid]

    again = await data.erase(SUBJECT)  # safe to repeat
    assert again.erased == dict.fromkeys(KINDS, 0)


async def test_a_subject_must_be_a_browser_id(store: Store) -> None:
    data = subjects_over(store, [HOSTED])
    for bad in ("", "OPT_OUT", SUBJECT[:-1], SUBJECT + "A", "!" * 22):
        with pytest.raises(InvalidSubject):
            await data.access(bad)
        with pytest.raises(InvalidSubject):
            await data.erase(bad)


async def test_the_registry_notes_hosted_buyers_before_serving_them(store: Store) -> None:
    hosted = HostedNids(store, SETTINGS, clock=time.time)
    registry = ExchangeRegistry(store, [HOSTED, PLAIN], on_buyers=hosted.note)
    await registry.refresh()
    assert await hosted.nids() == {HOSTED.nid}
    await registry.put_buyer(buyer("late-dsp", hosted=True))
    assert await hosted.nids() == {HOSTED.nid, "late-dsp"}
    await registry.delete_buyer("late-dsp")  # removed: still listed while its data may live
    await registry.refresh()
    assert await hosted.nids() == {HOSTED.nid, "late-dsp"}
    [(_, lifetime)] = [
        entry for nid, entry in (await store.hgetall_entries(HOSTED_NIDS_KEY)).items()
        if nid == "late-dsp"
    ]  # fmt: skip
    assert lifetime is not None and lifetime >= SETTINGS.hosted_match_ttl_days * DAY
