"""The exchange through a real ``cookiematch serve`` process (granian, RSGI) on the SQLite store."""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from cookiematch.exchange import keys
from cookiematch.protocol.cookies import parse_browser_id
from cookiematch.storage import open_store

from conftest import ServerProcess, free_port, load_then_kill
from support.configs import ADMIN_TOKEN, write_exchange_config

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def exchange(
    tmp_path_factory: pytest.TempPathFactory,
    start_module_server: Callable[..., ServerProcess],
) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("exchange")
    port = free_port()
    config = write_exchange_config(directory, port)
    argv = [sys.executable, "-m", "cookiematch", "serve", "--config", str(config)]
    start_module_server(argv=argv, port=port)
    yield f"http://127.0.0.1:{port}"


@pytest.fixture
def client(exchange: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=exchange, timeout=5, follow_redirects=False) as http:
        yield http


def cookie_from(response: httpx.Response) -> str:
    set_cookie = response.headers["set-cookie"]
    return set_cookie.split(";", 1)[0]


def redirect_params(response: httpx.Response) -> list[tuple[str, str]]:
    assert response.status_code == 302, response.text
    return parse_qsl(urlsplit(response.headers["location"]).query, keep_blank_values=True)


def new_browser_cookie(client: httpx.Client) -> str:
    first = client.get("/pixel?google_nid=ad_network_xyz&google_cm&google_sc")
    assert first.status_code == 302
    return cookie_from(first)


def test_cookie_set_verified_then_matched(client: httpx.Client) -> None:
    first = client.get("/pixel?google_nid=ad_network_xyz&google_cm&google_sc&x=1")
    assert first.status_code == 302
    assert first.headers["location"].startswith("/pixel?")
    assert "google_tc=1" in first.headers["location"]
    set_cookie = first.headers["set-cookie"]
    for attribute in ("Secure", "HttpOnly", "SameSite=None", "Path=/", "Max-Age="):
        assert attribute in set_cookie
    assert first.headers["cache-control"] == "no-store"
    second = client.get(first.headers["location"], headers={"Cookie": cookie_from(first)})
    params = redirect_params(second)
    assert second.headers["location"].startswith("http://ad.network.com/pixel?id=&x=1&google_gid=")
    assert dict(params)["google_cver"] == "1"


def test_browser_that_drops_the_cookie_gets_error_3(client: httpx.Client) -> None:
    first = client.get("/pixel?google_nid=ad_network_xyz&google_cm&google_sc")
    second = client.get(first.headers["location"])  # cookie not sent back
    assert redirect_params(second) == [("id", ""), ("google_error", "3")]


def test_https_from_a_trusted_proxy(client: httpx.Client) -> None:
    cookie = new_browser_cookie(client)
    response = client.get(
        "/pixel?google_nid=ad_network_xyz&google_cm",
        headers={"Cookie": cookie, "X-Forwarded-Proto": "https"},
    )
    assert response.headers["location"].startswith("https://ad.network.com/pixel?id=&google_gid=")


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("google_nid=ad_network_xyz&google_cm&bad=%4", {}),
        ("google_nid=ad_network_xyz&google_cm&bad=%zz", {}),
        ("google_nid=ad_network_xyz&google_cm&bad=%ff%fe", {}),
        ("google_nid=ad_network_xyz&google_nid=ad_network_xyz&google_cm", {}),
        ("google_cm", {}),
        ("google_nid=unknown&google_cm", {}),
        ("google_nid=ad_network_xyz&google_cm&x=%0d%0aSet-Cookie:%20evil=1", {}),
        ("google_nid=ad_network_xyz&google_cm&big=" + "a" * 9000, {}),
        ("google_nid=ad_network_xyz&google_cm", {"Cookie": "cm_id=" + "a" * 9000}),
    ],
)
def test_bad_input_is_a_clear_400_without_redirect(
    client: httpx.Client, query: str, headers: dict[str, str]
) -> None:
    response = client.get("/pixel?" + query, headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert "location" not in response.headers
    assert "set-cookie" not in response.headers


def test_garbage_cookie_is_treated_as_no_cookie(client: httpx.Client) -> None:
    response = client.get(
        "/pixel?google_nid=ad_network_xyz&google_cm", headers={"Cookie": "cm_id=not-an-id; x"}
    )
    assert redirect_params(response) == [("id", ""), ("google_error", "3")]


def press_optout_button(client: httpx.Client, cookie: str) -> httpx.Response:
    """GET the opt-out page, then POST its form as the browser would (its token twice)."""
    page = client.get("/optout", headers={"Cookie": cookie})
    assert page.status_code == 200
    token = page.text.split('name=csrf value="', 1)[1].split('"', 1)[0]
    action = page.text.split('name=action value="', 1)[1].split('"', 1)[0]
    return client.post(
        "/optout",
        content=f"csrf={token}&action={action}",
        headers={
            "Cookie": f"{cookie}; cm_optout_csrf={token}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Sec-Fetch-Site": "same-origin",
        },
    )


def test_optout_and_undo(client: httpx.Client) -> None:
    cookie = new_browser_cookie(client)
    page = client.get("/optout?undo=1", headers={"Cookie": cookie})  # a GET changes nothing
    assert [c for c in page.headers.get_list("set-cookie") if c.startswith("cm_id=")] == []
    out = press_optout_button(client, cookie)
    assert out.status_code == 200
    opted = cookie_from(out)
    assert opted.endswith("=OPT_OUT")
    response = client.get("/pixel?google_nid=ad_network_xyz&google_cm", headers={"Cookie": opted})
    assert redirect_params(response) == [("id", ""), ("google_error", "1")]
    assert (
        client.get("/optout?undo=1", headers={"Cookie": opted})
        .headers.get_list("set-cookie")[0]
        .startswith("cm_optout_csrf=")
    )  # the old undo link: only the page's token
    undo = press_optout_button(client, opted)
    fresh = cookie_from(undo)
    assert parse_browser_id(fresh.split("=", 1)[1]) is not None
    response = client.get("/pixel?google_nid=ad_network_xyz&google_cm", headers={"Cookie": fresh})
    assert "google_gid" in dict(redirect_params(response))


def test_admin_changes_take_effect_without_restart(client: httpx.Client) -> None:
    cookie = new_browser_cookie(client)
    body = {"redirect_url": "https://new.example/cm?a=1", "hosted_match": False}
    put = client.put("/admin/v1/buyers/newcomer", json=body, headers=AUTH)
    assert put.status_code == 201, put.text
    response = client.get("/pixel?google_nid=newcomer&google_cm", headers={"Cookie": cookie})
    assert response.headers["location"].startswith("http://new.example/cm?a=1&google_gid=")
    assert client.delete("/admin/v1/buyers/newcomer", headers=AUTH).status_code == 204
    gone = client.get("/pixel?google_nid=newcomer&google_cm", headers={"Cookie": cookie})
    assert gone.status_code == 400


def test_admin_requires_the_token_and_answers_problem_json(client: httpx.Client) -> None:
    response = client.get("/admin/v1/buyers")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    bad = client.put("/admin/v1/buyers/x", json={"redirect_url": "ftp://x"}, headers=AUTH)
    assert bad.status_code == 422
    assert bad.json()["errors"]


def test_metrics_count_outcomes(client: httpx.Client) -> None:
    client.get("/pixel?google_nid=ad_network_xyz")  # no operation: error 2
    text = client.get("/metrics").text
    assert 'cookiematch_pixel_outcomes_total{nid="ad_network_xyz",outcome="error_2"}' in text


def test_head_and_wrong_method(client: httpx.Client) -> None:
    assert client.head("/pixel?google_nid=ad_network_xyz&google_cm").status_code == 302
    response = client.post("/pixel?google_nid=ad_network_xyz&google_cm")
    assert response.status_code == 405


def test_acknowledged_hosted_match_writes_survive_kill_9(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """Every google_hm write that got its redirect is in the store after kill -9: alone and
    with a cookie match (the direct path's common cases), and with a user-list add (the
    general path), a third of the browsers each."""
    port = free_port()
    config = write_exchange_config(tmp_path, port)
    argv = [sys.executable, "-m", "cookiematch", "serve", "--config", str(config)]
    server = start_server(argv=argv, port=port)
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[tuple[bytes, bytes]] = []

    async def browser(number: int, http: httpx.AsyncClient) -> None:
        first = await http.get(f"{base}/pixel?google_nid=cookie-monster&google_cm&google_sc")
        cookie = cookie_from(first)
        browser_id = parse_browser_id(cookie.split("=", 1)[1])
        assert browser_id is not None
        for write in range(200):
            data = f"b{number}w{write}".encode()
            encoded = base64.urlsafe_b64encode(data).decode().rstrip("=")
            try:
                cm = ("", "&google_cm", "&google_ula=12345")[number % 3]
                response = await http.get(
                    f"{base}/pixel?google_nid=cookie-monster{cm}&google_hm={encoded}",
                    headers={"Cookie": cookie},
                )
            except httpx.HTTPError:
                return
            if response.status_code == 302 and "google_hm" not in response.headers["location"]:
                acknowledged.append((browser_id, data))

    load_then_kill(server, browser, acknowledged)
    latest: dict[bytes, bytes] = {}
    for browser_id, data in acknowledged:
        latest[browser_id] = data  # each browser's writes are sequential: the last ack wins

    async def check() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'exchange.db'}")
        try:
            for browser_id, data in latest.items():
                stored = await store.get(keys.hosted_match_key(browser_id, "cookie-monster"))
                assert stored is not None
                number, write = stored.decode()[1:].split("w")
                acked_number, acked_write = data.decode()[1:].split("w")
                assert number == acked_number and int(write) >= int(acked_write)
        finally:
            await store.close()

    assert len(acknowledged) >= 300
    asyncio.run(check())
