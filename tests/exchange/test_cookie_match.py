"""The Cookie Matching Service's decisions, on a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from cookiematch.exchange import keys
from cookiematch.exchange.cookie_match import Browser, CookieMatchService
from cookiematch.exchange.model import Buyer, ExchangeSettings, UserList
from cookiematch.exchange.outcomes import PushRecorded, RedirectToBuyer, VerifyCookie
from cookiematch.exchange.rate_limit import SharedRateLimit
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.protocol.matchtag import parse_match_tag
from cookiematch.protocol.push import PushTokens
from cookiematch.protocol.query import parse_query
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage import Store, open_store

from support.clock import FakeClock

BROWSER = bytes(range(16))
OTHER_BROWSER = bytes(range(1, 17))
NOW = 1_700_000_000.0


def make_service(
    store: Store,
    clock: FakeClock,
    settings: ExchangeSettings | None = None,
    admit: Callable[[Buyer], bool] | None = None,
) -> tuple[CookieMatchService, UserIdCipher, PushTokens]:
    buyers = [
        Buyer("ad_network_xyz", RedirectTemplate.compile("http://ad.network.com/pixel?id=")),
        Buyer(
            "cookie-monster",
            RedirectTemplate.compile("http://cookie-monster.com/pixel?id="),
            hosted_match=True,
            hosted_match_writes_per_second=2,
        ),
    ]
    lists = [
        UserList(12345, owner="ad_network_xyz"),
        UserList(45678, owner="ad_network_xyz"),
        UserList(777, owner="cookie-monster"),
        UserList(999, owner="ad_network_xyz", closed=True),
    ]
    cipher = UserIdCipher({1: b"k" * 32, 2: b"K" * 32})
    push = PushTokens(cipher, ttl_seconds=3600)
    service = CookieMatchService(
        registry=ExchangeRegistry(store, buyers, lists),
        store=store,
        cipher=cipher,
        push_tokens=push,
        settings=settings or ExchangeSettings(),
        clock=clock,
        new_browser_id=lambda: OTHER_BROWSER,
        admit=admit,
    )
    return service, cipher, push


async def run(
    service: CookieMatchService, query: str, browser: Browser, scheme: str = "http"
) -> object:
    request = parse_match_tag(parse_query(query))
    buyer = service.buyer(request.nid)
    assert buyer is not None
    return await service.match(request, buyer, browser, scheme)


def params_of(outcome: object) -> list[tuple[str, str]]:
    assert isinstance(outcome, RedirectToBuyer)
    return parse_qsl(urlsplit(outcome.location).query, keep_blank_values=True)


async def test_cookie_match_redirects_with_a_gid_that_decrypts_to_the_browser(
    store: Store,
) -> None:
    service, cipher, _ = make_service(store, FakeClock())
    outcome = await run(service, "google_nid=ad_network_xyz&google_cm&p1=v1", Browser(BROWSER))
    assert isinstance(outcome, RedirectToBuyer)
    assert outcome.location.startswith("http://ad.network.com/pixel?id=&p1=v1&google_gid=")
    params = dict(params_of(outcome))
    assert params["google_cver"] == "2"
    assert cipher.decrypt(params["google_gid"], "ad_network_xyz", 2) == BROWSER


async def test_a_buyer_key_version_pins_its_gids_and_a_change_rotates_them(
    store: Store,
) -> None:
    """A buyer's ``key_version`` is the version of its gids on both paths (the general one
    and the common case); changed through the registry, it takes effect at once; a version
    that is not configured means the current one."""
    service, cipher, _ = make_service(store, FakeClock())
    registry = service._registry  # the registry the admin API writes through
    common = service.common
    assert common is not None
    url = RedirectTemplate.compile("http://ad.network.com/pixel?id=")
    for pinned, expected in ((1, 1), (2, 2), (9, 2), (None, 2)):
        await registry.put_buyer(Buyer("ad_network_xyz", url, key_version=pinned))
        outcome = await run(service, "google_nid=ad_network_xyz&google_cm", Browser(BROWSER))
        params = dict(params_of(outcome))
        assert params["google_cver"] == str(expected)
        assert cipher.decrypt(params["google_gid"], "ad_network_xyz", expected) == BROWSER
        location = common.location("ad_network_xyz", BROWSER, "http", [])
        assert location == outcome.location  # type: ignore[attr-defined]


async def test_https_tag_redirects_over_https(store: Store) -> None:
    service, _, _ = make_service(store, FakeClock())
    outcome = await run(service, "google_nid=ad_network_xyz&google_cm", Browser(BROWSER), "https")
    assert isinstance(outcome, RedirectToBuyer)
    assert outcome.location.startswith("https://ad.network.com/pixel?id=&google_gid=")


@pytest.mark.parametrize(
    ("query", "browser", "error"),
    [
        ("google_nid=ad_network_xyz", Browser(BROWSER), 2),
        ("google_nid=ad_network_xyz&google_sc", Browser(BROWSER), 2),
        ("google_nid=ad_network_xyz&google_cm&google_push=abc", Browser(BROWSER), 4),
        ("google_nid=ad_network_xyz&google_cm", Browser(None, opted_out=True), 1),
        ("google_nid=ad_network_xyz&google_cm", Browser(None), 3),
        ("google_nid=ad_network_xyz&google_cm&google_no_sc", Browser(None), 3),
        ("google_nid=ad_network_xyz&google_cm&google_sc&google_tc=1", Browser(None), 3),
        ("google_nid=ad_network_xyz&google_push=forged", Browser(BROWSER), 5),
    ],
)
async def test_errors_carry_no_other_google_parameter(
    store: Store, query: str, browser: Browser, error: int
) -> None:
    service, _, _ = make_service(store, FakeClock())
    outcome = await run(service, query + "&keep=me", browser)
    assert params_of(outcome) == [("id", ""), ("keep", "me"), ("google_error", str(error))]


async def test_missing_cookie_with_google_sc_sets_and_verifies_a_cookie(store: Store) -> None:
    service, _, _ = make_service(store, FakeClock())
    outcome = await run(service, "google_nid=ad_network_xyz&google_cm&google_sc&x=1", Browser(None))
    assert isinstance(outcome, VerifyCookie)
    assert outcome.browser_id == OTHER_BROWSER
    assert parse_qsl(outcome.query, keep_blank_values=True)[-1] == ("google_tc", "1")
    second = await run(service, outcome.query, Browser(OTHER_BROWSER))
    assert dict(params_of(second))["x"] == "1"
    assert "google_gid" in dict(params_of(second))


@pytest.mark.parametrize(("default", "expect_set"), [(False, False), (True, True)])
async def test_default_without_sc_or_no_sc_is_configurable(
    store: Store, default: bool, expect_set: bool
) -> None:
    settings = ExchangeSettings(set_cookie_by_default=default)
    service, _, _ = make_service(store, FakeClock(), settings)
    outcome = await run(service, "google_nid=ad_network_xyz&google_cm", Browser(None))
    assert isinstance(outcome, VerifyCookie) is expect_set
    if not expect_set:
        assert dict(params_of(outcome))["google_error"] == "3"


async def test_user_list_statuses_and_memberships(store: Store) -> None:
    clock = FakeClock()
    service, _, _ = make_service(store, clock)
    query = (
        "google_nid=ad_network_xyz&google_ula=12345,7654321&google_ula=45678"
        "&google_ula=777&google_ula=999&google_ula=31337&google_ula=abc"
    )
    outcome = await run(service, query, Browser(BROWSER))
    assert params_of(outcome) == [
        ("id", ""),
        ("google_ula", "12345,0"),
        ("google_ula", "45678,0"),
        ("google_ula", "777,2"),
        ("google_ula", "999,6"),
        ("google_ula", "31337,5"),
        ("google_ula", "abc,5"),
    ]
    # the seed's timestamp 7654321 (March 1970): counted from then, it ended long ago
    members = await store.hgetall(keys.user_lists_key(BROWSER))
    assert members == {"45678": str(int(NOW)).encode()}


async def test_membership_counts_from_the_given_time_bounded_by_now(store: Store) -> None:
    service, _, _ = make_service(store, FakeClock())
    ten_days_ago, tomorrow = int(NOW) - 10 * 86400, int(NOW) + 86400
    query = f"google_nid=ad_network_xyz&google_ula=12345,{ten_days_ago}&google_ula=45678,{tomorrow}"
    outcome = await run(service, query, Browser(BROWSER))
    assert params_of(outcome) == [("id", ""), ("google_ula", "12345,0"), ("google_ula", "45678,0")]
    entries = await store.hgetall_entries(keys.user_lists_key(BROWSER))
    value, ttl = entries["12345"]  # from ten days ago: 30 - 10 days left
    assert value == str(ten_days_ago).encode() and ttl is not None
    assert 20 * 86400 - 60 < ttl <= 20 * 86400
    value, ttl = entries["45678"]  # a time to come is now: the whole 30 days
    assert value == str(int(NOW)).encode() and ttl is not None
    assert 30 * 86400 - 60 < ttl <= 30 * 86400


async def test_user_list_add_fails_with_status_10_when_the_store_fails(tmp_path: Path) -> None:
    broken = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    await broken.close()
    service, _, _ = make_service(broken, FakeClock())
    outcome = await run(service, "google_nid=ad_network_xyz&google_ula=12345", Browser(BROWSER))
    assert params_of(outcome) == [("id", ""), ("google_ula", "12345,10")]


async def test_hosted_match_success_adds_nothing_and_stores_the_data(store: Store) -> None:
    service, _, _ = make_service(store, FakeClock())
    query = "google_nid=cookie-monster&google_hm=Q29va2llIG51bWJlciAxIQ%3D%3D"
    outcome = await run(service, query, Browser(BROWSER))
    assert isinstance(outcome, RedirectToBuyer)
    assert outcome.location == "http://cookie-monster.com/pixel?id="
    stored = await store.get(keys.hosted_match_key(BROWSER, "cookie-monster"))
    assert stored == b"Cookie number 1!"


@pytest.mark.parametrize(
    ("nid", "value", "status"),
    [
        ("ad_network_xyz", "Q29va2ll", 1),
        ("cookie-monster", "chocolate_chunk!", 2),
        ("cookie-monster", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQQ", 3),
    ],
)
async def test_hosted_match_failures_keep_the_old_data(
    store: Store, nid: str, value: str, status: int
) -> None:
    service, _, _ = make_service(store, FakeClock())
    key = keys.hosted_match_key(BROWSER, nid)
    await store.set(key, b"old")
    outcome = await run(service, f"google_nid={nid}&google_hm={value}", Browser(BROWSER))
    assert params_of(outcome) == [("id", ""), ("google_hm", str(status))]
    assert await store.get(key) == b"old"


async def test_hosted_match_write_failure_is_status_4(tmp_path: Path) -> None:
    broken = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    await broken.close()
    service, _, _ = make_service(broken, FakeClock())
    outcome = await run(service, "google_nid=cookie-monster&google_hm=Q29va2ll", Browser(BROWSER))
    assert params_of(outcome) == [("id", ""), ("google_hm", "4")]


async def test_hosted_match_writes_are_throttled_per_buyer(store: Store) -> None:
    clock = FakeClock()
    service, _, _ = make_service(store, clock)
    query = "google_nid=cookie-monster&google_hm=Q29va2ll"
    statuses = [
        dict(params_of(await run(service, query, Browser(BROWSER)))).get("google_hm")
        for _ in range(3)
    ]
    assert statuses == [None, None, "5"]
    clock.now += 1
    assert "google_hm" not in dict(params_of(await run(service, query, Browser(BROWSER))))


async def test_valid_push_is_recorded_and_answered_with_a_pixel(store: Store) -> None:
    clock = FakeClock()
    service, _, push = make_service(store, clock)
    token = push.issue(BROWSER, "ad_network_xyz", int(NOW))
    clock.now += 60
    outcome = await run(
        service, f"google_nid=ad_network_xyz&google_push={token}&google_ula=12345", Browser(BROWSER)
    )
    assert outcome == PushRecorded("ad_network_xyz", stored=True)
    matches = await store.hgetall(keys.pixel_matches_key(BROWSER))
    assert matches == {"ad_network_xyz": str(int(NOW) + 60).encode()}
    assert "12345" in await store.hgetall(keys.user_lists_key(BROWSER))


@pytest.mark.parametrize("case", ["other_buyer", "other_browser", "expired", "tampered"])
async def test_invalid_push_is_error_5(store: Store, case: str) -> None:
    clock = FakeClock()
    service, _, push = make_service(store, clock)
    nid = "cookie-monster" if case == "other_buyer" else "ad_network_xyz"
    browser = OTHER_BROWSER if case == "other_browser" else BROWSER
    token = push.issue(browser, nid, int(NOW))
    if case == "expired":
        clock.now += 3601
    if case == "tampered":
        token = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    outcome = await run(service, f"google_nid=ad_network_xyz&google_push={token}", Browser(BROWSER))
    assert params_of(outcome) == [("id", ""), ("google_error", "5")]
    assert await store.hgetall(keys.pixel_matches_key(BROWSER)) == {}


async def test_extras_over_one_kilobyte_are_dropped_and_flagged(store: Store) -> None:
    service, _, _ = make_service(store, FakeClock())
    big = "x" * 1100
    outcome = await run(service, f"google_nid=ad_network_xyz&google_cm&big={big}", Browser(BROWSER))
    assert isinstance(outcome, RedirectToBuyer)
    assert outcome.extras_dropped
    assert "big" not in dict(params_of(outcome))


async def test_gids_differ_between_buyers(store: Store) -> None:
    service, _, _ = make_service(store, FakeClock())
    first = await run(service, "google_nid=ad_network_xyz&google_cm", Browser(BROWSER))
    second = await run(service, "google_nid=cookie-monster&google_cm", Browser(BROWSER))
    assert dict(params_of(first))["google_gid"] != dict(params_of(second))["google_gid"]


async def test_a_push_token_is_accepted_once_per_browser_and_buyer(store: Store) -> None:
    clock = FakeClock()
    service, _, push = make_service(store, clock)
    token = push.issue(BROWSER, "ad_network_xyz", int(NOW))
    query = f"google_nid=ad_network_xyz&google_push={token}&google_ula=12345"
    clock.now += 60
    assert await run(service, query, Browser(BROWSER)) == PushRecorded("ad_network_xyz", True)
    clock.now += 60
    replayed = await run(service, query, Browser(BROWSER))
    assert params_of(replayed) == [("id", ""), ("google_error", "5")]  # as an invalid token
    assert isinstance(replayed, RedirectToBuyer) and replayed.push_replayed
    matches = await store.hgetall(keys.pixel_matches_key(BROWSER))
    assert matches == {"ad_network_xyz": str(int(NOW) + 60).encode()}  # the first return's
    mark = await store.get_entry(keys.push_return_key(BROWSER, "ad_network_xyz"))
    assert mark is not None and mark[0] == str(int(NOW)).encode()  # the token's issue time
    assert mark[1] is not None and 3530 < mark[1] <= 3540  # kept for the token's lifetime


async def test_two_tokens_of_one_page_are_each_accepted_once(store: Store) -> None:
    """A page with two ad slots may be given two tokens for one buyer: each is accepted once,
    in the order they were issued; an earlier one after a later one is refused."""
    clock = FakeClock()
    service, _, push = make_service(store, clock)
    earlier = push.issue(BROWSER, "ad_network_xyz", int(NOW))
    later = push.issue(BROWSER, "ad_network_xyz", int(NOW) + 1)
    clock.now += 5
    for token, accepted in [(earlier, True), (later, True), (later, False), (earlier, False)]:
        outcome = await run(service, f"google_nid=ad_network_xyz&google_push={token}",
                            Browser(BROWSER))  # fmt: skip
        assert isinstance(outcome, PushRecorded) is accepted, token
        if not accepted:
            assert isinstance(outcome, RedirectToBuyer) and outcome.push_replayed


async def test_concurrent_returns_of_one_push_token_record_one_match(store: Store) -> None:
    clock = FakeClock()
    first, _, push = make_service(store, clock)
    second, _, _ = make_service(store, clock)  # another worker over the same store
    token = push.issue(BROWSER, "ad_network_xyz", int(NOW))
    query = f"google_nid=ad_network_xyz&google_push={token}"
    outcomes = await asyncio.gather(
        *(run(service, query, Browser(BROWSER)) for service in (first, second, first, second))
    )
    assert sum(isinstance(o, PushRecorded) for o in outcomes) == 1
    assert sum(isinstance(o, RedirectToBuyer) and o.push_replayed for o in outcomes) == 3


async def test_a_push_token_returned_for_another_buyer_is_not_marked(store: Store) -> None:
    clock = FakeClock()
    service, _, push = make_service(store, clock)
    token = push.issue(BROWSER, "ad_network_xyz", int(NOW))
    refused = await run(service, f"google_nid=cookie-monster&google_push={token}", Browser(BROWSER))
    assert isinstance(refused, RedirectToBuyer) and not refused.push_replayed
    assert await store.get(keys.push_return_key(BROWSER, "cookie-monster")) is None
    query = f"google_nid=ad_network_xyz&google_push={token}"
    assert await run(service, query, Browser(BROWSER)) == PushRecorded("ad_network_xyz", True)


async def test_a_match_tag_over_the_buyers_rate_is_answered_and_nothing_is_done(
    store: Store,
) -> None:
    """Over the limit: the redirect to the buyer without a gid, the writes refused with the
    statuses a buyer knows (google_hm=5 throttled, google_ula=<id>,10 re-match later)."""
    clock = FakeClock()
    limiter = SharedRateLimit(store, clock=clock, worker_id="w1")
    service, _, push = make_service(store, clock, admit=lambda buyer: limiter.allow(buyer.nid, 1.0))
    first = await run(service, "google_nid=cookie-monster&google_cm&x=1", Browser(BROWSER))
    assert isinstance(first, RedirectToBuyer) and not first.limited
    tag = "google_nid=cookie-monster&google_cm&google_hm=YWJj&google_ula=777&x=1"
    limited = await run(service, tag, Browser(BROWSER))
    assert isinstance(limited, RedirectToBuyer) and limited.limited and limited.error is None
    assert limited.location == (
        "http://cookie-monster.com/pixel?id=&x=1&google_ula=777,10&google_hm=5"
    )
    assert await store.get(keys.hosted_match_key(BROWSER, "cookie-monster")) is None
    assert await store.hgetall(keys.user_lists_key(BROWSER)) == {}
    token = push.issue(BROWSER, "cookie-monster", int(clock()))
    back = f"google_nid=cookie-monster&google_push={token}"
    returned = await run(service, back, Browser(BROWSER))
    assert isinstance(returned, PushRecorded)  # the pixel-matching return leg is not limited
    clock.advance(1.0)
    again = await run(service, "google_nid=cookie-monster&google_cm", Browser(BROWSER))
    assert isinstance(again, RedirectToBuyer) and "google_gid=" in again.location
