"""Partner-initiated syncs on a real SQLite store: a partner's callback without a DMP cookie
cookies the browser (first hop), and the second hop stores the match or counts the refusal."""

from __future__ import annotations

import dataclasses

import pytest

from cookiematch.dmp.partner_ids import seal
from cookiematch.dmp.service import CallbackStatus, DmpService
from cookiematch.storage import Store

from .helpers import NOW, PARTNERS, FakeClock, consent, make_service

INITIATING = [
    dataclasses.replace(p, initiates_sync=True) if p.id in {"analytics", "email"} else p
    for p in PARTNERS
]
EMAIL = next(p for p in INITIATING if p.id == "email")
VERIFY, STORED = CallbackStatus.VERIFY_COOKIE, CallbackStatus.STORED


@pytest.fixture
def service(store: Store, clock: FakeClock) -> DmpService:
    return make_service(store, clock, partners=INITIATING)


async def counts(service: DmpService, partner: str) -> dict[str, int]:
    return (await service.funnel_report()).partners[partner].counts


async def test_the_two_hops_store_the_match_apart_from_the_tag_funnel(
    service: DmpService,
) -> None:
    quiet = consent(service)
    assert await service.callback("analytics", None, "A-1", "shop", consent=quiet) is VERIFY
    uid = service.verify_cookie("analytics")
    assert await service.profile(uid) is None  # the first hop stores nothing
    second = await service.callback(
        "analytics", uid, "A-1", "shop", consent=quiet, cookie_test=True
    )
    assert second is STORED
    found = await service.profiles.find("analytics", "A-1")
    assert found is not None and found.dmp_uid == uid and found.synced_at == {"analytics": NOW}
    row = await counts(service, "analytics")
    assert (row["initiated"], row["initiated_stored"], row["callbacks"]) == (1, 1, 0)
    assert (await service.funnel_report()).clients["shop"].counts["callbacks"] == 0


async def test_a_signed_id_is_checked_on_both_hops(service: DmpService) -> None:
    quiet = consent(service)
    sealed = seal(EMAIL, "E-9", NOW)
    assert await service.callback("email", None, sealed, consent=quiet) is VERIFY
    forged = sealed.rpartition(".")[0] + ".forged"
    assert await service.callback("email", None, forged, consent=quiet) is CallbackStatus.BAD_ID
    uid = service.verify_cookie("email")
    assert await service.callback("email", uid, sealed, consent=quiet, cookie_test=True) is STORED
    assert (await service.profile(uid)).partners == {"email": "E-9"}  # type: ignore[union-attr]


async def test_the_second_hop_without_the_cookie_is_counted_and_stores_nothing(
    service: DmpService,
) -> None:
    quiet = consent(service)
    refused = await service.callback("analytics", None, "A-2", consent=quiet, cookie_test=True)
    assert refused is CallbackStatus.COOKIE_REFUSED
    assert await service.profiles.find("analytics", "A-2") is None
    row = await counts(service, "analytics")
    assert (row["cookie_refused"], row["rejected"], row["initiated"]) == (1, 0, 0)


async def test_what_never_starts_a_sync(service: DmpService) -> None:
    quiet = consent(service)
    # a partner not allowed to initiate syncs, with or without the marker
    for cookie_test in (False, True):
        status = await service.callback("orders", None, "O-1", consent=quiet,
                                        cookie_test=cookie_test)  # fmt: skip
        assert status is CallbackStatus.NO_COOKIE
    # in-band data needs a DMP cookie, whatever the partner
    status = await service.inband("analytics", None, "A-3", "k:v", consent=quiet)
    assert status is CallbackStatus.NO_COOKIE
    # no ID, the macro as sent, an ID that does not parse: no cookie
    for raw in (None, "$UID", "a b"):
        assert await service.callback("analytics", None, raw, consent=quiet) is not VERIFY
    # the signals refuse the DMP cookie, or the partner
    refusals = [
        consent(service, gdpr="1"),
        consent(service, us_privacy="1YYN"),
        consent(service, "1"),  # Sec-GPC
    ]
    for refusal in refusals:
        status = await service.callback("analytics", None, "A-4", consent=refusal)
        assert status is CallbackStatus.PRIVACY
    assert (await counts(service, "analytics"))["initiated"] == 0
