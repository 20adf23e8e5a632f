"""The DMP use cases on a real SQLite store: sync, callbacks both ways, events, in-band data,
audiences, profiles and the funnel."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from cookiematch.dmp.consent import RequestConsent
from cookiematch.dmp.events import EventType, ImpressionEvent
from cookiematch.dmp.funnel_log import FunnelLog
from cookiematch.dmp.partner_ids import seal
from cookiematch.dmp.service import CallbackStatus, DmpService
from cookiematch.errors import StorageError, StoreUnavailable
from cookiematch.storage import Store, open_store
from cookiematch.storage.guard import GuardedStore

from .helpers import CLIENTS, NOW, PARTNERS, FakeClock, consent, make_service

SHOP, BLOG = CLIENTS
BY_ID = {p.id: p for p in PARTNERS}


def callback_of(pixel: str) -> str:
    return dict(parse_qsl(urlsplit(pixel).query))["redir"]


async def test_a_new_browser_gets_an_id_and_the_top_partners(
    service: DmpService, quiet: RequestConsent
) -> None:
    result = await service.sync(SHOP, None, quiet)
    assert result.new_browser and result.dmp_uid
    assert len(result.pixels) == 3
    assert callback_of(result.pixels[0]) == (
        "http://dmp.localhost:8720/callback/analytics?c=shop&uid=$UID"
    )
    assert result.pixels[2] == f"https://oms.example/px/{result.dmp_uid}"


async def test_callback_stores_both_ways_and_the_partner_is_then_fresh(
    service: DmpService, clock: FakeClock, quiet: RequestConsent
) -> None:
    uid = (await service.sync(SHOP, None, quiet)).dmp_uid
    assert (
        await service.callback("analytics", uid, "A-123", "shop", consent=quiet)
        is CallbackStatus.STORED
    )
    profile = await service.profile(uid)
    assert profile is not None
    assert profile.partners == {"analytics": "A-123"}
    assert profile.synced_at == {"analytics": NOW}
    found = await service.profiles.find("analytics", "A-123")
    assert found is not None and found.dmp_uid == uid

    again = await service.sync(SHOP, uid, quiet)
    assert not again.new_browser
    assert [s.status.value for s in again.decision.statuses][:2] == ["fresh", "sync"]
    assert not any("analytics.example" in url for url in again.pixels)

    clock.now += 8 * 86400  # analytics' ttl is 7 days
    later = await service.sync(SHOP, uid, quiet)
    assert any("analytics.example" in url for url in later.pixels)


async def test_a_new_partner_uid_replaces_the_old_reverse_entry(
    service: DmpService, quiet: RequestConsent
) -> None:
    uid = (await service.sync(SHOP, None, quiet)).dmp_uid
    await service.callback("analytics", uid, "old-id", consent=quiet)
    await service.callback("analytics", uid, "new-id", consent=quiet)
    assert await service.profiles.find("analytics", "old-id") is None
    found = await service.profiles.find("analytics", "new-id")
    assert found is not None and found.partners == {"analytics": "new-id"}


async def test_partner_ids_with_braces_do_not_escape_their_key(
    service: DmpService, quiet: RequestConsent
) -> None:
    uid = (await service.sync(SHOP, None, quiet)).dmp_uid
    assert (
        await service.callback("analytics", uid, "}{odd}:id", consent=quiet)
        is CallbackStatus.STORED
    )
    found = await service.profiles.find("analytics", "}{odd}:id")
    assert found is not None and found.dmp_uid == uid


async def test_signed_and_encrypted_ids(
    service: DmpService, clock: FakeClock, quiet: RequestConsent
) -> None:
    uid = (await service.sync(SHOP, None, quiet)).dmp_uid
    signed = seal(BY_ID["email"], "E-9", clock.now)
    encrypted = seal(BY_ID["dsp"], "D-7", clock.now)
    assert await service.callback("email", uid, signed, consent=quiet) is CallbackStatus.STORED
    assert await service.callback("dsp", uid, encrypted, consent=quiet) is CallbackStatus.STORED
    forged = signed.rpartition(".")[0] + ".AAAA"
    assert await service.callback("email", uid, forged, consent=quiet) is CallbackStatus.BAD_ID
    assert await service.callback("dsp", uid, "E-9", consent=quiet) is CallbackStatus.BAD_ID
    profile = await service.profile(uid)
    assert profile is not None and profile.partners == {"dsp": "D-7", "email": "E-9"}
    report = await service.funnel_report()
    assert report.partners["email"].counts["rejected"] == 1
    assert report.partners["email"].counts["callbacks"] == 1
    assert report.other["rejected_bad_id"] == 2


async def test_refused_callbacks(service: DmpService, quiet: RequestConsent) -> None:
    uid = (await service.sync(SHOP, None, quiet)).dmp_uid
    assert (
        await service.callback("nobody", uid, "x", consent=quiet) is CallbackStatus.UNKNOWN_PARTNER
    )
    assert await service.callback("analytics", None, "x", consent=quiet) is CallbackStatus.NO_COOKIE
    assert (
        await service.callback("analytics", uid, None, consent=quiet) is CallbackStatus.MISSING_UID
    )
    assert (
        await service.callback("analytics", uid, "$UID", consent=quiet)
        is CallbackStatus.MACRO_NOT_REPLACED
    )
    assert await service.callback("email", uid, "[EMAIL_ID]", consent=quiet) is (
        CallbackStatus.MACRO_NOT_REPLACED
    )
    assert await service.callback("analytics", uid, "a b", consent=quiet) is CallbackStatus.BAD_ID
    assert await service.profile(uid) is None


async def test_events_are_tallied_and_bounded(
    service: DmpService, clock: FakeClock, quiet: RequestConsent
) -> None:
    uid = "bounded-events-profile"
    events = [ImpressionEvent(EventType.IMP, f"c{i}", "s", "cr") for i in range(3)]
    for event in events:
        await service.impression(uid, event)
        clock.now += 1
    await service.impression(uid, events[0])  # c0 becomes the most recent
    clock.now += 1
    await service.impression(uid, ImpressionEvent(EventType.CLICK, "c9"))  # evicts c1
    profile = await service.profile(uid)
    assert profile is not None
    seen = {(e.event, e.campaign): e.count for e in profile.events}
    assert seen == {("imp", "c0"): 2, ("imp", "c2"): 1, ("click", "c9"): 1}
    assert (await service.audiences(uid, quiet)).kv == {
        "dmp_click": ["c9"],
        "dmp_imp": ["c0", "c2"],
    }


async def test_inband_data_and_audiences(service: DmpService, quiet: RequestConsent) -> None:
    uid = (await service.sync(SHOP, None, quiet)).dmp_uid
    status = await service.inband("analytics", uid, "A-1", "tier:gold,age:30", consent=quiet)
    assert status is CallbackStatus.STORED
    assert (
        await service.inband("analytics", uid, "A-1", "tier=gold", consent=quiet)
        is CallbackStatus.BAD_DATA
    )
    too_many = ",".join(f"k{i}:v" for i in range(21))
    assert (
        await service.inband("analytics", uid, "A-1", too_many, consent=quiet)
        is CallbackStatus.BAD_DATA
    )
    profile = await service.profile(uid)
    assert profile is not None
    assert profile.inband == {"analytics": {"age": "30", "tier": "gold"}}
    assert profile.partners == {"analytics": "A-1"}
    assert (await service.audiences(uid, quiet)).kv == {
        "analytics_age": ["30"],
        "analytics_tier": ["gold"],
        "dmp_partners": ["analytics"],
    }
    assert (await service.audiences(None, quiet)).kv == {}


async def test_inband_values_the_store_could_not_take_are_counted_as_failed(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The store's file write-locked by another connection (as another process would hold
    it): the in-band store call passes its deadline; the error goes on to the route (which
    answers the pixel) and the funnel counts the redirect and its values as failed."""
    path = tmp_path / "dmp.db"
    inner = open_store(f"sqlite://{path}", clock=clock)
    service = make_service(GuardedStore(inner, deadline=0.05), clock)
    try:
        await inner.set("ready", b"1")  # the file and its tables exist before the lock
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            uid = service.new_uid()
            for raw_uid in ("A-1", "A-2"):  # each over its deadline, or refused by the breaker
                with pytest.raises(StoreUnavailable):
                    await service.inband(
                        "analytics", uid, raw_uid, "tier:gold,age:30", consent=consent(service)
                    )
        finally:
            lock.rollback()
            lock.close()
        inband = (await service.funnel_report(inner)).delivery["analytics"].inband
        assert inband is not None
        assert (inband.arrived, inband.values) == (0, 0)
        assert (inband.failed, inband.failed_values) == (2, 4)
    finally:
        await inner.close()


async def test_the_funnel_sums_every_worker_and_survives_a_restart(
    store: Store, clock: FakeClock
) -> None:
    first, second = make_service(store, clock, "w1"), make_service(store, clock, "w2")
    for worker in (first, second):
        for _ in range(5):
            uid = (await worker.sync(SHOP, None, consent(worker))).dmp_uid
            await worker.callback("analytics", uid, "a", "shop", consent=consent(worker))
        await worker.sync(BLOG, None, consent(worker))
    await second.funnel_log.flush()
    report = await first.funnel_report()
    analytics, orders = report.partners["analytics"], report.partners["orders"]
    assert analytics.counts == {
        "pixels": 10, "callbacks": 10, "callback_failed": 0, "rejected": 0, "inband": 0,
        "initiated": 0, "initiated_stored": 0, "cookie_refused": 0,
    }  # fmt: skip
    assert (orders.counts["pixels"], orders.loss, orders.loss_rate) == (12, 12, 1.0)
    shop = report.clients["shop"]
    assert shop.counts == {"tag_js": 0, "tags_loaded": 10, "pixels": 30, "callbacks": 10}
    assert (shop.loss, shop.loss_rate) == (20, 0.6667)
    assert report.clients["blog"].counts["pixels"] == 2

    restarted = make_service(store, clock, "w3")
    assert (await restarted.funnel_report()).partners["analytics"].counts["pixels"] == 10


async def test_a_failed_funnel_flush_is_written_by_the_next(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A flush that fails (here: the store is closed) keeps the counts marked changed: the
    next flush writes them, even with no new count in between."""
    path = f"sqlite://{tmp_path / 'funnel.db'}"
    lost = open_store(path, clock=clock)
    service = make_service(lost, clock, "w1")
    uid = (await service.sync(SHOP, None, consent(service))).dmp_uid
    await service.callback("analytics", uid, "a", "shop", consent=consent(service))
    await lost.close()
    with pytest.raises(StorageError):
        await service.funnel_log.flush()
    back = open_store(path, clock=clock)
    try:
        log = FunnelLog(back, "w1", service.funnel)
        await log.flush()
        counts = (await log.total()).partners["analytics"]
        assert (counts["pixels"], counts["callbacks"]) == (1, 1)
    finally:
        await back.close()
