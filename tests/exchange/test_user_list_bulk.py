"""User list members in bulk by gid: the domain on SQLite, and the admin route (problem+json)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cookiematch.errors import NotFound, ValidationFailed
from cookiematch.exchange import keys
from cookiematch.exchange.list_changes import ListChanges
from cookiematch.exchange.model import Buyer, UserList
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.exchange.user_list_bulk import (
    MAX_ENTRIES,
    MembersRequest,
    TimedGid,
    UserListBulk,
    parse_members_request,
)
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage import Store, open_store
from cookiematch.web.exchange.admin import build_admin_app, user_list_members_route

NOW = 1_700_000_000.0
TOKEN = "bulk-admin-token-0123456789"
BROWSERS = [bytes([i]) * 16 for i in range(1, 6)]
NID = "ad_network_xyz"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path}/exchange.db", clock=lambda: NOW)
    yield opened
    await opened.close()


@pytest.fixture
def cipher() -> UserIdCipher:
    return UserIdCipher({1: b"k" * 32, 2: b"K" * 32})


@pytest.fixture
def bulk(store: Store, cipher: UserIdCipher) -> UserListBulk:
    registry = ExchangeRegistry(
        store,
        [
            Buyer(NID, RedirectTemplate.compile("http://ad.network.com/pixel?id=")),
            Buyer("other", RedirectTemplate.compile("http://other.example/p?id=")),
        ],
        [
            UserList(12345, owner=NID, membership_days=7),
            UserList(777, owner="other"),
            UserList(999, owner=NID, closed=True),
        ],
    )
    return UserListBulk(registry, store, cipher, clock=lambda: NOW)


async def test_adds_and_removes_write_what_google_ula_writes(
    bulk: UserListBulk, store: Store, cipher: UserIdCipher
) -> None:
    gids = [cipher.encrypt(b, NID, 1) for b in BROWSERS]
    forged = gids[0][:-2] + ("AA" if gids[0][-2:] != "AA" else "BA")
    other_buyer = cipher.encrypt(BROWSERS[0], "other", 1)
    outcome = await bulk.apply(
        12345, MembersRequest(NID, 1, gids=[*gids, forged, other_buyer, "short"])
    )
    data = outcome.to_dict()
    assert (data["added"], data["invalid"], data["removed"]) == (5, 3, 0)
    assert await store.hget(keys.user_lists_key(BROWSERS[2]), "12345") == str(int(NOW)).encode()
    maps = [m async for m in store.scan_maps("ul:")]
    ttl = maps[0][1]["12345"][1]
    assert ttl == pytest.approx(7 * 86400)

    removed = await bulk.apply(12345, MembersRequest(NID, 1, remove=gids[:2]))
    assert removed.to_dict()["removed"] == 2
    assert await store.hget(keys.user_lists_key(BROWSERS[0]), "12345") is None
    assert await store.hget(keys.user_lists_key(BROWSERS[3]), "12345") is not None


async def test_a_gid_may_carry_the_time_it_was_added(
    store: Store, cipher: UserIdCipher, bulk: UserListBulk
) -> None:
    changes = ListChanges(store, worker_id="w", clock=lambda: NOW)
    counted = UserListBulk(bulk._registry, store, cipher, clock=lambda: NOW, changes=changes)
    gids = [cipher.encrypt(b, NID, 1) for b in BROWSERS[:3]]
    three_days_ago, eight_days_ago = int(NOW) - 3 * 86400, int(NOW) - 8 * 86400
    request = parse_members_request(
        {
            "nid": NID,
            "gids": [
                {"gid": gids[0], "timestamp": three_days_ago},
                {"gid": gids[1], "timestamp": eight_days_ago},  # the list keeps 7 days
                {"gid": gids[2], "timestamp": int(NOW) + 3600},  # to come: now
            ],
        }
    )
    assert request.gids[0] == TimedGid(gids[0], three_days_ago)
    outcome = (await counted.apply(12345, request)).to_dict()
    assert [r["status"] for r in outcome["results"]] == ["added", "expired", "added"]
    assert (outcome["added"], outcome["expired"]) == (2, 1)
    entries = [await store.hgetall_entries(keys.user_lists_key(b)) for b in BROWSERS[:3]]
    assert entries[0]["12345"][0] == str(three_days_ago).encode()
    assert entries[0]["12345"][1] == pytest.approx(4 * 86400)
    assert entries[1] == {}
    assert entries[2]["12345"] == (str(int(NOW)).encode(), pytest.approx(7 * 86400))
    await changes.flush()
    assert await changes.totals(12345) == {"added": 2, "removed": 0, "expired": 1}


async def test_key_versions(bulk: UserListBulk, store: Store, cipher: UserIdCipher) -> None:
    gid = cipher.encrypt(BROWSERS[0], NID, 2)
    assert (await bulk.apply(12345, MembersRequest(NID, 1, [gid]))).to_dict()["invalid"] == 1
    assert (await bulk.apply(12345, MembersRequest(NID, 2, [gid]))).to_dict()["added"] == 1
    with pytest.raises(ValidationFailed, match="key version"):
        await bulk.apply(12345, MembersRequest(NID, 9, [gid]))


@pytest.mark.parametrize(
    ("list_id", "nid", "error", "match"),
    [
        (4242, NID, NotFound, "no user list"),
        (777, NID, ValidationFailed, "another buyer"),
        (999, NID, ValidationFailed, "closed"),
        (12345, "nobody", ValidationFailed, "unknown buyer"),
    ],
)
async def test_refusals(
    bulk: UserListBulk, list_id: int, nid: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        await bulk.apply(list_id, MembersRequest(nid, 1, ["x"]))


def test_request_validation() -> None:
    assert parse_members_request({"nid": NID, "gids": ["a"]}) == MembersRequest(NID, 1, ["a"])
    with pytest.raises(ValidationFailed) as caught:
        parse_members_request({"nid": NID, "gids": "a"})
    assert caught.value.errors[0]["field"] == "gids"
    with pytest.raises(ValidationFailed, match="at most"):
        parse_members_request({"nid": NID, "gids": ["a"] * MAX_ENTRIES, "remove": ["b"]})
    with pytest.raises(ValidationFailed):
        parse_members_request({"nid": NID, "extra": 1})


async def test_admin_route(bulk: UserListBulk, cipher: UserIdCipher) -> None:
    app = build_admin_app(
        bulk._registry,
        TOKEN,
        extra_routes=[user_list_members_route(bulk._registry, bulk)],
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    gid = cipher.encrypt(BROWSERS[0], NID, 1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://exchange"
    ) as client:
        url = "/admin/v1/user_lists/12345/members"
        answer = await client.post(url, json={"nid": NID, "gids": [gid, "bad"]}, headers=auth)
        assert answer.status_code == 200
        assert answer.json()["results"] == [
            {"gid": gid, "status": "added"},
            {"gid": "bad", "status": "invalid"},
        ]
        assert (await client.post(url, json={"nid": NID})).status_code == 401
        for path, body, status in [
            ("/admin/v1/user_lists/4242/members", {"nid": NID}, 404),
            ("/admin/v1/user_lists/abc/members", {"nid": NID}, 404),
            ("/admin/v1/user_lists/777/members", {"nid": NID}, 422),
            (url, {"gids": []}, 422),
        ]:
            answer = await client.post(path, json=body, headers=auth)
            assert answer.status_code == status, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
        answer = await client.post(url, content=b"{nope", headers=auth)
        assert answer.status_code == 400
