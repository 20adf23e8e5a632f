"""Buyers' API credentials and their scopes in the exchange's admin API, in-process (httpx
ASGITransport) over a real SQLite-backed registry; and the rules between buyers' pre-targeting
and user lists."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from cookiematch.config import load_config
from cookiematch.exchange import keys
from cookiematch.exchange.credentials import (
    TOKEN_PREFIX,
    authenticate,
    new_credential,
    token_sha256,
)
from cookiematch.exchange.enforcement import Enforcer
from cookiematch.exchange.list_changes import Change, ListChanges
from cookiematch.exchange.model import ExchangeSettings
from cookiematch.exchange.monitoring import BuyerMonitor
from cookiematch.exchange.rate_limit import SharedRateLimit
from cookiematch.exchange.registry import (
    BUYERS_KEY,
    CREDENTIALS_KEY,
    USER_LISTS_KEY,
    ExchangeRegistry,
)
from cookiematch.exchange.table_sizes import TableSizeLog
from cookiematch.exchange.user_list_bulk import UserListBulk
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage import Store, open_store
from cookiematch.web.exchange.admin import (
    build_admin_app,
    stats_routes,
    user_list_members_route,
    user_list_stats_route,
)
from cookiematch.web.exchange.credentials import authenticator, credential_routes

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "exchange.toml"
TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CIPHER = UserIdCipher({1: b"k" * 32})
NOW = 1_700_000_000.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite://{tmp_path / 'admin.db'}")
    yield opened
    await opened.close()


@pytest.fixture
def registry(store: Store) -> ExchangeRegistry:
    exchange = load_config(EXAMPLE, environ={}).exchange
    assert exchange is not None
    return ExchangeRegistry(store, exchange.buyers, exchange.user_lists)


@pytest.fixture
def changes(store: Store) -> ListChanges:
    return ListChanges(store, worker_id="w", clock=lambda: NOW)


def admin_client(
    registry: ExchangeRegistry, store: Store, changes: ListChanges, **options: Any
) -> httpx.AsyncClient:
    """A client of the exchange's admin API over ``registry``, every route served;
    ``options`` go to ``build_admin_app``."""
    settings = ExchangeSettings()
    monitor = BuyerMonitor(store, settings, clock=lambda: NOW, worker_id="w")
    limiter = SharedRateLimit(store, clock=lambda: NOW, worker_id="w")
    enforcer = Enforcer(
        store, monitor, limiter, settings.enforcement, registry.buyers, holder="w", interval=10.0
    )
    sizes = TableSizeLog(store, interval_seconds=600)
    bulk = UserListBulk(registry, store, CIPHER, clock=lambda: NOW, changes=changes)
    app = build_admin_app(
        registry,
        TOKEN,
        extra_routes=[
            *stats_routes(registry, monitor, enforcer),
            user_list_members_route(registry, bulk),
            user_list_stats_route(registry, sizes, changes),
            *credential_routes(registry, clock=lambda: NOW),
        ],
        **{"authenticate": authenticator(registry), **options},
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin")


@pytest.fixture
async def client(
    registry: ExchangeRegistry, store: Store, changes: ListChanges
) -> AsyncIterator[httpx.AsyncClient]:
    async with admin_client(registry, store, changes) as c:
        yield c


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


async def mint(client: httpx.AsyncClient, nid: str, *scopes: str) -> dict[str, Any]:
    body = {"scopes": list(scopes)} if scopes else {}
    created = await client.post(f"/admin/v1/buyers/{nid}/credentials", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    data: dict[str, Any] = created.json()
    return data


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_credential_is_shown_once_and_kept_as_its_hash(
    client: httpx.AsyncClient, registry: ExchangeRegistry, store: Store
) -> None:
    created = await mint(client, "ad_network_xyz")
    token = created["token"]
    assert token.startswith(TOKEN_PREFIX) and len(token) >= len(TOKEN_PREFIX) + 43
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert created == {
        "id": digest[:16],
        "nid": "ad_network_xyz",
        "token_sha256": digest,
        "scopes": ["user_lists"],
        "created_at": NOW,
        "token": token,
    }
    stored = await store.hget(CREDENTIALS_KEY, created["id"])
    assert stored is not None and token.encode() not in stored and digest.encode() in stored
    listing = await client.get("/admin/v1/buyers/ad_network_xyz/credentials", headers=ADMIN)
    assert listing.json() == {"credentials": [{k: v for k, v in created.items() if k != "token"}]}
    assert token not in listing.text
    # another worker picks it up at its refresh
    other = ExchangeRegistry(store, registry.buyers(), registry.user_lists())
    await other.refresh()
    found = authenticate(other, token)
    assert found is not None and found.nid == "ad_network_xyz"


async def test_unknown_revoked_and_orphaned_tokens_are_401(
    client: httpx.AsyncClient, registry: ExchangeRegistry
) -> None:
    created = await mint(client, "cookie-monster")
    token = created["token"]
    assert (await client.get("/admin/v1/user_lists", headers=bearer(token))).status_code == 200
    forged, _ = new_credential("cookie-monster", ("user_lists",))
    for presented in [forged, token[:-1], "cmk_", TOKEN_PREFIX + "x" * 43, token.upper()]:
        problem(await client.get("/admin/v1/user_lists", headers=bearer(presented)), 401)
    path = f"/admin/v1/buyers/cookie-monster/credentials/{created['id']}"
    assert (await client.delete(path, headers=ADMIN)).status_code == 204
    problem(await client.delete(path, headers=ADMIN), 404)
    problem(await client.get("/admin/v1/user_lists", headers=bearer(token)), 401)
    # a credential whose buyer is deleted stops working
    second = (await mint(client, "ad_network_xyz"))["token"]
    assert (await client.delete("/admin/v1/buyers/ad_network_xyz", headers=ADMIN)).is_success
    problem(await client.get("/admin/v1/user_lists", headers=bearer(second)), 401)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/admin/v1/buyers", None),
        ("GET", "/admin/v1/buyers/ad_network_xyz", None),
        ("PUT", "/admin/v1/buyers/ad_network_xyz", {"redirect_url": "http://evil.example/p"}),
        ("DELETE", "/admin/v1/buyers/cookie-monster", None),
        ("DELETE", "/admin/v1/buyers/ad_network_xyz", None),
        ("PUT", "/admin/v1/buyers/newcomer", {"redirect_url": "http://new.example/p"}),
        ("POST", "/admin/v1/buyers/ad_network_xyz/credentials", {}),
        ("GET", "/admin/v1/buyers/ad_network_xyz/credentials", None),
        ("GET", "/admin/v1/stats", None),
        ("GET", "/admin/v1/buyers/ad_network_xyz/stats", None),
        ("GET", "/admin/v1/nothing_here", None),
    ],
)
async def test_a_buyer_credential_reaches_nothing_outside_its_scopes(
    client: httpx.AsyncClient,
    registry: ExchangeRegistry,
    method: str,
    path: str,
    body: object,
) -> None:
    token = (await mint(client, "ad_network_xyz", "user_lists", "redirect_url"))["token"]
    answer = await client.request(method, path, json=body, headers=bearer(token))
    assert "does not allow" in problem(answer, 403)["detail"]
    assert registry.buyer("cookie-monster") is not None and registry.buyer("newcomer") is None


async def test_user_lists_scope_manages_the_buyers_own_lists_only(
    client: httpx.AsyncClient, registry: ExchangeRegistry, changes: ListChanges
) -> None:
    auth = bearer((await mint(client, "ad_network_xyz"))["token"])
    listed = await client.get("/admin/v1/user_lists", headers=auth)
    assert [u["id"] for u in listed.json()["user_lists"]] == [12345, 45678]  # not 24680
    created = await client.put(
        "/admin/v1/user_lists/555", json={"membership_days": 9}, headers=auth
    )
    assert created.status_code == 201, created.text
    assert created.json() == {"id": 555, "owner": "ad_network_xyz", "closed": False,
                              "membership_days": 9}  # fmt: skip
    closed = await client.put("/admin/v1/user_lists/555", json={"closed": True}, headers=auth)
    assert closed.status_code == 200 and closed.json()["closed"] is True
    assert (await client.get("/admin/v1/user_lists/555", headers=auth)).status_code == 200
    # another buyer's list: not read, not deleted, not given members, not counted: it is
    # not there for this credential; its ID is taken
    for method in ["GET", "DELETE"]:
        answer = await client.request(method, "/admin/v1/user_lists/24680", headers=auth)
        assert problem(answer, 404)["detail"] == "no user list '24680'"
    taken = await client.put("/admin/v1/user_lists/24680", json={}, headers=auth)
    detail = problem(taken, 409)["detail"]
    assert "held by another buyer" in detail and "cookie-monster" not in detail
    gid = CIPHER.encrypt(b"\x01" * 16, "cookie-monster", 1)
    theirs = {"nid": "cookie-monster", "gids": [gid]}
    problem(await client.post("/admin/v1/user_lists/24680/members", json=theirs, headers=auth), 403)
    problem(await client.post("/admin/v1/user_lists/12345/members", json=theirs, headers=auth), 403)
    mine_nid = {"nid": "ad_network_xyz", "gids": [gid]}
    answer = await client.post("/admin/v1/user_lists/24680/members", json=mine_nid, headers=auth)
    problem(answer, 404)
    problem(await client.get("/admin/v1/user_lists/24680/stats", headers=auth), 404)
    # a new list for another buyer is refused, whatever the body says
    given = {"owner": "cookie-monster"}
    problem(await client.put("/admin/v1/user_lists/556", json=given, headers=auth), 403)
    assert registry.user_list(556) is None and registry.user_list(24680) is not None
    # its own members and sizes
    mine = CIPHER.encrypt(b"\x02" * 16, "ad_network_xyz", 1)
    added = await client.post(
        "/admin/v1/user_lists/12345/members",
        json={"nid": "ad_network_xyz", "gids": [mine]},
        headers=auth,
    )
    assert added.status_code == 200 and added.json()["added"] == 1
    await changes.flush()
    stats = (await client.get("/admin/v1/user_lists/12345/stats", headers=auth)).json()
    assert stats == {"id": 12345, "owner": "ad_network_xyz", "members": None,
                     "measured_at": None, "window_days": 7, "added": 1, "removed": 0,
                     "expired": 0}  # fmt: skip
    assert (await client.delete("/admin/v1/user_lists/555", headers=auth)).status_code == 204


async def test_redirect_url_scope_changes_that_field_alone(
    client: httpx.AsyncClient, registry: ExchangeRegistry
) -> None:
    await client.put(
        "/admin/v1/buyers/ad_network_xyz",
        json={"redirect_url": "http://ad.network.com/pixel?id=", "max_qps": 5},
        headers=ADMIN,
    )
    auth = bearer((await mint(client, "ad_network_xyz", "redirect_url"))["token"])
    path = "/admin/v1/buyers/ad_network_xyz/redirect_url"
    assert (await client.get(path, headers=auth)).json() == {
        "nid": "ad_network_xyz",
        "redirect_url": "http://ad.network.com/pixel?id=",
    }
    new = {"redirect_url": "https://ad.network.com/m?id="}
    assert (await client.put(path, json=new, headers=auth)).json()["redirect_url"] == new[
        "redirect_url"
    ]
    buyer = registry.buyer("ad_network_xyz")
    assert buyer is not None and buyer.redirect_url.url == new["redirect_url"]
    assert buyer.max_qps == 5  # the rest of the buyer is untouched
    for body in [{"redirect_url": "ftp://x"}, {"redirect_url": new["redirect_url"], "max_qps": 1},
                 {}]:  # fmt: skip
        problem(await client.put(path, json=body, headers=auth), 422)
    other = "/admin/v1/buyers/cookie-monster/redirect_url"
    problem(await client.put(other, json=new, headers=auth), 403)
    # this credential has no user_lists scope
    problem(await client.get("/admin/v1/user_lists", headers=auth), 403)


async def test_credential_requests_are_validated(client: httpx.AsyncClient) -> None:
    base = "/admin/v1/buyers/ad_network_xyz/credentials"
    for body in [{"scopes": ["everything"]}, {"scopes": []}, {"scopes": "user_lists"},
                 {"scopes": ["user_lists", "user_lists"]}, {"nid": "x"}]:  # fmt: skip
        problem(await client.post(base, json=body, headers=ADMIN), 422)
    problem(await client.post("/admin/v1/buyers/nobody/credentials", json={}, headers=ADMIN), 404)
    both = await mint(client, "ad_network_xyz", "user_lists", "redirect_url")
    assert both["scopes"] == ["user_lists", "redirect_url"]
    wrong = f"/admin/v1/buyers/cookie-monster/credentials/{both['id']}"
    problem(await client.delete(wrong, headers=ADMIN), 404)  # not that buyer's


async def test_required_lists_must_exist_and_be_the_buyers(client: httpx.AsyncClient) -> None:
    url = "http://ad.network.com/pixel?id="
    path = "/admin/v1/buyers/ad_network_xyz"
    for lists, message in [([4242], "no user list 4242"), ([24680], "another buyer")]:
        body = {"redirect_url": url, "require_user_lists": lists}
        errors = problem(await client.put(path, json=body, headers=ADMIN), 422)["errors"]
        assert errors[0]["field"] == "require_user_lists[0]" and message in errors[0]["message"]
    body = {"redirect_url": url, "require_user_lists": [12345, 12345]}
    problem(await client.put(path, json=body, headers=ADMIN), 422)
    body = {"redirect_url": url, "require_user_lists": [12345]}
    assert (await client.put(path, json=body, headers=ADMIN)).status_code == 200
    # a required list can be neither deleted nor given to another buyer
    problem(await client.delete("/admin/v1/user_lists/12345", headers=ADMIN), 409)
    moved = {"owner": "cookie-monster"}
    problem(await client.put("/admin/v1/user_lists/12345", json=moved, headers=ADMIN), 409)
    kept = {"owner": "ad_network_xyz", "membership_days": 10}
    assert (await client.put("/admin/v1/user_lists/12345", json=kept, headers=ADMIN)).is_success


async def test_list_stats_read_the_last_measurement(
    client: httpx.AsyncClient, store: Store, changes: ListChanges
) -> None:
    for i in range(3):
        await store.hset(keys.user_lists_key(bytes([i]) * 16), {"45678": b"1"}, ttl=3600)
    await TableSizeLog(store, interval_seconds=600, clock=lambda: NOW).measure_if_due()
    changes.count(45678, Change.REMOVED, 2)
    await changes.flush()
    stats = (await client.get("/admin/v1/user_lists/45678/stats", headers=ADMIN)).json()
    assert (stats["members"], stats["measured_at"], stats["removed"]) == (3, NOW, 2)
    assert (await client.get("/admin/v1/user_lists/24680/stats", headers=ADMIN)).json()[
        "members"
    ] == 0
    problem(await client.get("/admin/v1/user_lists/4242/stats", headers=ADMIN), 404)


async def test_a_list_id_stays_its_owners_after_the_list_is_deleted(
    client: httpx.AsyncClient, registry: ExchangeRegistry, store: Store
) -> None:
    """Browsers' memberships of a deleted list outlive it: its ID must never reach another
    buyer, whose bid requests would carry them."""
    mine = bearer((await mint(client, "ad_network_xyz"))["token"])
    theirs = bearer((await mint(client, "cookie-monster"))["token"])
    assert (await client.put("/admin/v1/user_lists/7", json={}, headers=mine)).status_code == 201
    assert (await client.delete("/admin/v1/user_lists/7", headers=mine)).status_code == 204
    for auth in [mine, theirs]:
        problem(await client.get("/admin/v1/user_lists/7", headers=auth), 404)
    detail = problem(await client.put("/admin/v1/user_lists/7", json={}, headers=theirs), 409)
    assert "held by another buyer" in detail["detail"]
    given = {"owner": "cookie-monster"}  # the admin token cannot give it away either
    detail = problem(await client.put("/admin/v1/user_lists/7", json=given, headers=ADMIN), 409)
    assert "held by buyer 'ad_network_xyz'" in detail["detail"]
    # nor can a configured list's, once deleted; nor a live list's owner change
    assert (await client.delete("/admin/v1/user_lists/45678", headers=ADMIN)).status_code == 204
    problem(await client.put("/admin/v1/user_lists/45678", json=given, headers=ADMIN), 409)
    problem(await client.put("/admin/v1/user_lists/12345", json=given, headers=ADMIN), 409)
    # what the store keeps, and what another worker makes of it
    stored = await store.hget(USER_LISTS_KEY, "7")
    assert stored is not None
    assert msgspec.json.decode(stored) == {"deleted": True, "owner": "ad_network_xyz"}
    other = ExchangeRegistry(store, registry.buyers(), registry.user_lists())
    await other.refresh()
    assert other.user_list(7) is None and await other.list_holder(7) == "ad_network_xyz"
    assert other.held_lists("ad_network_xyz") == 3  # 12345, 45678 and 7, deleted or not
    # its owner may use it again
    again = await client.put("/admin/v1/user_lists/7", json={"closed": True}, headers=mine)
    assert again.status_code == 201 and again.json()["owner"] == "ad_network_xyz"


async def test_a_buyer_holds_at_most_max_user_lists_per_buyer(
    registry: ExchangeRegistry, store: Store, changes: ListChanges
) -> None:
    async with admin_client(registry, store, changes, max_user_lists_per_buyer=4) as client:
        auth = bearer((await mint(client, "ad_network_xyz"))["token"])
        # it holds 12345 and 45678 from the file
        for list_id in [1, 2]:
            answer = await client.put(f"/admin/v1/user_lists/{list_id}", json={}, headers=auth)
            assert answer.status_code == 201
        for headers, body in [(auth, {}), (ADMIN, {"owner": "ad_network_xyz"})]:
            answer = await client.put("/admin/v1/user_lists/3", json=body, headers=headers)
            assert "max_user_lists_per_buyer" in problem(answer, 409)["detail"]
        assert registry.user_list(3) is None
        # a deleted list's ID still counts; it can be used again, and the others replaced
        assert (await client.delete("/admin/v1/user_lists/2", headers=auth)).status_code == 204
        problem(await client.put("/admin/v1/user_lists/3", json={}, headers=auth), 409)
        assert (await client.put("/admin/v1/user_lists/2", json={}, headers=auth)).is_success
        closed = {"closed": True}
        assert (await client.put("/admin/v1/user_lists/1", json=closed, headers=auth)).is_success
        # another buyer has its own allowance
        given = {"owner": "cookie-monster"}
        answer = await client.put("/admin/v1/user_lists/3", json=given, headers=ADMIN)
        assert answer.status_code == 201


async def test_a_redirect_url_change_keeps_another_workers_change(
    client: httpx.AsyncClient, registry: ExchangeRegistry, store: Store
) -> None:
    """The handler's worker has not refreshed since another worker changed the buyer: the
    redirect URL alone changes, the other change stays."""
    other = ExchangeRegistry(store, registry.buyers(), registry.user_lists())
    await other.refresh()
    before = other.buyer("ad_network_xyz")
    assert before is not None and registry.buyer("ad_network_xyz") is not None
    await other.put_buyer(msgspec.structs.replace(before, max_qps=7.0))
    auth = bearer((await mint(client, "ad_network_xyz", "redirect_url"))["token"])
    new = {"redirect_url": "https://ad.network.com/m?id="}
    answer = await client.put(
        "/admin/v1/buyers/ad_network_xyz/redirect_url", json=new, headers=auth
    )
    assert answer.json() == {"nid": "ad_network_xyz", **new}
    stored = await store.hget(BUYERS_KEY, "ad_network_xyz")
    assert stored is not None
    record = msgspec.json.decode(stored)
    assert (record["redirect_url"], record["max_qps"]) == (new["redirect_url"], 7.0)


async def test_deleting_a_buyer_revokes_its_credentials(store: Store, changes: ListChanges) -> None:
    """Its credentials, those of the file and those another worker created, do not come back
    with a buyer created again under the same nid."""
    in_file, configured = new_credential("ad_network_xyz", ("user_lists",))
    exchange = load_config(EXAMPLE, environ={}).exchange
    assert exchange is not None

    def worker() -> ExchangeRegistry:
        return ExchangeRegistry(store, exchange.buyers, exchange.user_lists, [configured])

    here, other = worker(), worker()
    async with admin_client(here, store, changes) as client:
        minted = (await mint(client, "ad_network_xyz"))["token"]
        await other.refresh()
        elsewhere, credential = new_credential("ad_network_xyz", ("user_lists",))
        await other.put_credential(credential)  # this worker has not seen it yet
        kept = (await mint(client, "cookie-monster"))["token"]
        path = "/admin/v1/buyers/ad_network_xyz"
        assert (await client.delete(path, headers=ADMIN)).status_code == 204
        body = {"redirect_url": "http://ad.network.com/pixel?id="}
        assert (await client.put(path, json=body, headers=ADMIN)).status_code == 201
        listing = await client.get(f"{path}/credentials", headers=ADMIN)
        assert listing.json() == {"credentials": []}
        revoked = [minted, elsewhere, in_file]
        for registry in [here, other]:
            await registry.refresh()
            assert [authenticate(registry, token) for token in revoked] == [None] * 3
            assert authenticate(registry, kept) is not None
        for token in revoked:
            problem(await client.get("/admin/v1/user_lists", headers=bearer(token)), 401)
    # the stored map: the configured credential's tombstone, the others' fields removed
    fields = await store.hgetall(CREDENTIALS_KEY)
    assert fields.keys() == {configured.id, token_sha256(kept)[:16]}
    assert fields[configured.id] == b"null"


async def test_without_an_admin_token_the_admin_api_refuses_credentials_too(
    registry: ExchangeRegistry, store: Store, changes: ListChanges
) -> None:
    token, credential = new_credential("ad_network_xyz", ("user_lists", "redirect_url"))
    await registry.put_credential(credential)
    app = build_admin_app(registry, "", authenticate=authenticator(registry))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        for path in ["/admin/v1/user_lists", "/admin/v1/buyers/ad_network_xyz/redirect_url"]:
            problem(await client.get(path, headers=bearer(token)), 401)
            problem(await client.get(path, headers={"Authorization": "Bearer "}), 401)
        assert (await client.get("/admin/v1/health")).status_code == 200
