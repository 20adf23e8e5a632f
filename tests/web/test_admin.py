"""The admin API in-process (httpx ASGITransport) over a real sqlite-backed ExchangeRegistry."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cookiematch.config import Secret, load_config
from cookiematch.errors import StorageError
from cookiematch.exchange import codec
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.secret import MASK
from cookiematch.storage import Store, open_store
from cookiematch.web.admin import MAX_BODY_BYTES
from cookiematch.web.exchange.admin import build_admin_app
from cookiematch.web.openapi import Operation

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "exchange.toml"
TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
URL = "http://new.example/pixel?id="
UNSET = {  # a buyer's keys that an entry leaves out, as the API answers them
    "hosted_match": False,
    "hosted_match_writes_per_second": None,
    "bidder_url": None,
    "push_url": None,
    "pixel_matching": False,
    "require_hosted_match": False,
    "require_user_lists": [],
    "max_qps": None,
    "max_match_tags_per_second": None,
    "enforcement": None,
    "gvl_vendor_id": None,
    "optout_webhook_url": None,
    "optout_webhook_secret": None,
    "key_version": None,
}


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


async def _boom(request: Request) -> Response:
    raise RuntimeError("secret internal detail")


@pytest.fixture
async def client(registry: ExchangeRegistry) -> AsyncIterator[httpx.AsyncClient]:
    app = build_admin_app(
        registry,
        Secret(TOKEN),
        extra_routes=[Route("/admin/v1/boom", _boom)],
        extra_operations=[Operation("GET", "/admin/v1/boom", "fails", {200: None})],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin", headers=AUTH) as c:
        yield c


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    return body


def error_fields(response: httpx.Response) -> set[str]:
    body = assert_problem(response, 422)
    return {e["field"] for e in body["errors"]}


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin/v1/health", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
)
async def test_token_required(client: httpx.AsyncClient, authorization: str | None) -> None:
    headers = httpx.Headers(AUTH)
    del headers["Authorization"]
    if authorization is not None:
        headers["Authorization"] = authorization
    for method, path in [("GET", "/admin/v1/buyers"), ("DELETE", "/admin/v1/buyers/ad_network_xyz"),
                         ("GET", "/admin/v1/unknown")]:  # fmt: skip
        request = client.build_request(method, path)
        request.headers = headers
        response = await client.send(request)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in response.text


async def test_bearer_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin/v1/buyers", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200


async def test_empty_token_refuses_everything(registry: ExchangeRegistry) -> None:
    app = build_admin_app(registry, "")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
        assert_problem(await c.get("/admin/v1/buyers", headers={"Authorization": "Bearer "}), 401)


async def test_list_configured(client: httpx.AsyncClient) -> None:
    buyers = (await client.get("/admin/v1/buyers")).json()["buyers"]
    assert [b["nid"] for b in buyers] == ["ad_network_xyz", "cookie-monster"]
    assert buyers[0] == {
        "nid": "ad_network_xyz",
        "redirect_url": "http://ad.network.com/pixel?id=",
        **UNSET,
    }
    lists = (await client.get("/admin/v1/user_lists")).json()["user_lists"]
    assert [u["id"] for u in lists] == [12345, 24680, 45678]


async def test_buyer_lifecycle(
    client: httpx.AsyncClient, registry: ExchangeRegistry, store: Store
) -> None:
    body = {"redirect_url": URL, "hosted_match": True, "hosted_match_writes_per_second": 10}
    created = await client.put("/admin/v1/buyers/new_buyer", json=body)
    assert created.status_code == 201
    assert created.headers["location"] == "/admin/v1/buyers/new_buyer"
    stored = {"nid": "new_buyer", **UNSET, **body, "hosted_match_writes_per_second": 10.0}
    assert created.json() == stored
    assert (await client.get("/admin/v1/buyers/new_buyer")).json() == stored
    # effective at once, and persisted for other workers / a restart
    live = registry.buyer("new_buyer")
    assert live is not None and live.redirect_url.url == URL
    other = ExchangeRegistry(store)
    await other.refresh()
    persisted = other.buyer("new_buyer")
    assert persisted is not None and codec.encode(persisted) == codec.encode(live)

    replaced = await client.put(
        "/admin/v1/buyers/new_buyer", json={"nid": "new_buyer", "redirect_url": URL}
    )
    assert replaced.status_code == 200
    assert replaced.json() == {"nid": "new_buyer", "redirect_url": URL, **UNSET}

    assert (await client.delete("/admin/v1/buyers/new_buyer")).status_code == 204
    assert registry.buyer("new_buyer") is None
    assert_problem(await client.get("/admin/v1/buyers/new_buyer"), 404)
    assert_problem(await client.delete("/admin/v1/buyers/new_buyer"), 404)


async def test_the_webhook_secret_is_never_shown(
    client: httpx.AsyncClient, registry: ExchangeRegistry, store: Store
) -> None:
    secret = "webhook-secret-0123456789"
    body = {"redirect_url": URL, "optout_webhook_url": "https://dsp.example/optout",
            "optout_webhook_secret": secret}  # fmt: skip
    created = await client.put("/admin/v1/buyers/hooked", json=body)
    assert created.status_code == 201, created.text
    shown = [created, await client.get("/admin/v1/buyers/hooked"),
             await client.get("/admin/v1/buyers")]  # fmt: skip
    assert all(secret not in answer.text for answer in shown)
    assert created.json()["optout_webhook_secret"] == MASK
    # what a GET shows can be sent back as it is: the mask keeps the secret stored
    kept = await client.put("/admin/v1/buyers/hooked", json=created.json())
    assert kept.status_code == 200 and secret not in kept.text
    live = registry.buyer("hooked")
    assert live is not None and live.optout_webhook_secret == secret
    stored = await store.hget("exchange:buyers", "hooked")
    assert stored is not None and secret.encode() in stored  # every worker reads it there
    # a mask for a buyer without a secret is refused, not stored as one
    masked = {"redirect_url": URL, "optout_webhook_url": "https://dsp.example/optout",
              "optout_webhook_secret": MASK}  # fmt: skip
    assert error_fields(await client.put("/admin/v1/buyers/other", json=masked)) == {
        "optout_webhook_secret"
    }


async def test_delete_configured_buyer(client: httpx.AsyncClient, store: Store) -> None:
    assert (await client.delete("/admin/v1/buyers/cookie-monster")).status_code == 204
    exchange = load_config(EXAMPLE, environ={}).exchange
    assert exchange is not None
    restarted = ExchangeRegistry(store, exchange.buyers)
    await restarted.refresh()
    assert restarted.buyer("cookie-monster") is None
    assert restarted.buyer("ad_network_xyz") is not None


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("x", {"nid": "y", "redirect_url": URL}, {"nid"}),
        (
            "x",
            {"redirect_url": URL, "colour": "blue", "hosted_match": "yes"},
            {"colour", "hosted_match"},
        ),
        ("x", {"redirect_url": "ftp://a.example/"}, {"redirect_url"}),
        ("x", {"redirect_url": "http://a.example/?u=%%GOOGLE_NOPE%%"}, {"redirect_url"}),
        ("x", {"redirect_url": "http://a.example/?" + "a" * 2100}, {"redirect_url"}),
        ("x", {"redirect_url": "http://a.example/#frag"}, {"redirect_url"}),
        ("x", {"redirect_url": 7}, {"redirect_url"}),
        ("x", {}, {"redirect_url"}),
        (
            "x",
            {"redirect_url": URL, "hosted_match_writes_per_second": 0},
            {"hosted_match_writes_per_second"},
        ),
        ("bad%20nid", {"redirect_url": URL}, {"nid"}),
        ("n" * 65, {"redirect_url": URL}, {"nid"}),
        ("x", [1, 2], {""}),
        ("x", "text", {""}),
    ],
)
async def test_buyer_validation(
    client: httpx.AsyncClient, registry: ExchangeRegistry, path: str, body: object, fields: set[str]
) -> None:
    response = await client.put(f"/admin/v1/buyers/{path}", json=body)
    assert error_fields(response) == fields
    assert all(e["message"] for e in response.json()["errors"])
    assert [b.nid for b in registry.buyers()] == ["ad_network_xyz", "cookie-monster"]


DEEP = b"[" * 1000 + b"]" * 1000  # 2 KB nested deeper than the decoder goes


@pytest.mark.parametrize("content", [b"{", b"", b"not json", b'{"a": 1} trailing', b"\xff", DEEP])
async def test_malformed_json(client: httpx.AsyncClient, content: bytes) -> None:
    body = assert_problem(await client.put("/admin/v1/buyers/x", content=content), 400)
    assert "JSON" in body["detail"]


async def test_body_too_large(client: httpx.AsyncClient) -> None:
    big = b'{"redirect_url": "' + b"a" * MAX_BODY_BYTES + b'"}'
    assert_problem(await client.put("/admin/v1/buyers/x", content=big), 413)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    assert_problem(await client.put("/admin/v1/buyers/x", content=chunks()), 413)


async def test_user_list_lifecycle(client: httpx.AsyncClient, registry: ExchangeRegistry) -> None:
    created = await client.put("/admin/v1/user_lists/777", json={"owner": "cookie-monster"})
    assert created.status_code == 201
    expected = {"id": 777, "owner": "cookie-monster", "closed": False, "membership_days": 30}
    assert created.json() == expected
    assert (await client.get("/admin/v1/user_lists/777")).json() == expected
    closed = await client.put(
        "/admin/v1/user_lists/777", json={"id": 777, "owner": "cookie-monster", "closed": True}
    )
    assert closed.status_code == 200
    live = registry.user_list(777)
    assert live is not None and live.closed
    assert (await client.delete("/admin/v1/user_lists/777")).status_code == 204
    assert registry.user_list(777) is None
    assert_problem(await client.get("/admin/v1/user_lists/777"), 404)
    assert_problem(await client.delete("/admin/v1/user_lists/777"), 404)


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("777", {"owner": "nobody"}, {"owner"}),
        ("777", {"id": 778, "owner": "ad_network_xyz"}, {"id"}),
        ("777", {"owner": "ad_network_xyz", "membership_days": "30"}, {"membership_days"}),
        ("777", {"owner": "ad_network_xyz", "extra": 1}, {"extra"}),
        ("abc", {"owner": "ad_network_xyz"}, {"id"}),
        ("0", {"owner": "ad_network_xyz"}, {"id"}),
        ("99999999999999999999", {"owner": "ad_network_xyz"}, {"id"}),
    ],
)
async def test_user_list_validation(
    client: httpx.AsyncClient, path: str, body: object, fields: set[str]
) -> None:
    assert error_fields(await client.put(f"/admin/v1/user_lists/{path}", json=body)) == fields


async def test_owner_must_exist_now(client: httpx.AsyncClient) -> None:
    await client.delete("/admin/v1/buyers/cookie-monster")
    response = await client.put("/admin/v1/user_lists/5", json={"owner": "cookie-monster"})
    assert error_fields(response) == {"owner"}


@pytest.mark.parametrize(
    "path", ["/admin/v1/user_lists/abc", "/admin/v1/user_lists/0", "/admin/v1/user_lists/1"]
)
async def test_unknown_user_list(client: httpx.AsyncClient, path: str) -> None:
    assert_problem(await client.get(path), 404)


@pytest.mark.parametrize(
    "path",
    ["/admin/v1/nothing", "/admin/v1", "/admin/v2/buyers", "/elsewhere", "/admin/v1/buyers/"],
)
async def test_unknown_paths(client: httpx.AsyncClient, path: str) -> None:
    # a trailing slash is a 404, not a redirect to a URL built from the Host header
    assert_problem(await client.get(path, headers={"Host": "evil.example"}), 404)


async def test_method_not_allowed(client: httpx.AsyncClient) -> None:
    response = await client.post("/admin/v1/buyers", json={})
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]
    assert_problem(await client.patch("/admin/v1/buyers/x", json={}), 405)


async def test_unexpected_error_is_a_bare_500(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="cookiematch.admin"):
        response = await client.get("/admin/v1/boom")
    body = assert_problem(response, 500)
    assert body["detail"] == "internal error"
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert "secret internal detail" in caplog.text  # logged, with its traceback


async def test_store_failure_is_503(
    client: httpx.AsyncClient, registry: ExchangeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(*args: object) -> None:
        raise StorageError("disk full")

    monkeypatch.setattr(registry, "put_buyer", failing)
    response = await client.put("/admin/v1/buyers/x", json={"redirect_url": URL})
    assert_problem(response, 503)
    assert "disk full" not in response.text
