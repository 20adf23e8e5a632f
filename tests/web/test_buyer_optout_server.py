"""The buyer's opt-out and erasure as real ``cookiematch serve --role buyer`` processes, on
SQLite and on Redis: its ``/optout`` page (a POST acts only from the page itself), an
opted-out browser on ``/match``, ``/push`` and ``/matchtag``, the exchange's signed notices at
``/exchange/optout``, the admin API's subject routes and ``cookiematch subject``.

What is left in the store is counted by scanning the buyer's keys and fields
(``buyer/stored.py``), never by asking the server."""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from buyer.stored import stored_about
from cookiematch.buyer.ids import parse_uid
from cookiematch.protocol.optout_notice import OptOutNotice, encode_notice, sign
from cookiematch.storage import open_store
from storage.redis_servers import RedisServer, require_redis

from conftest import ServerProcess, free_port
from support.configs import serve_argv
from support.eventually import eventually

TOKEN = "buyer-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "exchange-optout-secret-0123456789"
EXCHANGE = "https://exchange.example/pixel"
NID = "dsp"
OPT_OUT = "OPT_OUT"


def write_config(directory: Path, port: int, store_url: str, *, secret: bool = True) -> Path:
    path = directory / "buyer.toml"
    secret_line = f'exchange_optout_secret = "{SECRET}"' if secret else ""
    path.write_text(f"""
[store]
url = "{store_url}"

[buyer]
listen = "127.0.0.1:{port}"
nid = "{NID}"
exchange_url = "{EXCHANGE}"
admin_token = "{TOKEN}"
hosted_match = true
{secret_line}
""")
    return path


@dataclass
class Buyer:
    client: httpx.Client
    store_url: str
    config: Path
    origin: str

    def stored(self, *, uids: Sequence[bytes] = (), gids: Sequence[str] = ()) -> list[str]:
        """What the store holds about ``uids`` and ``gids``, scanned from this process."""

        async def scan() -> list[str]:
            store = open_store(self.store_url)
            try:
                await store.start()
                return await stored_about(store, NID, uids=uids, gids=gids)
            finally:
                await store.close()

        return asyncio.run(scan())


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_redis()
    server = RedisServer(tmp_path_factory.mktemp("buyer-optout-redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def buyer(
    request: pytest.FixtureRequest,
    start_module_server: Callable[..., ServerProcess],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Buyer]:
    directory = tmp_path_factory.mktemp(f"optout-{request.param}")
    if request.param == "sqlite":
        store_url = f"sqlite:///{directory / 'buyer.db'}"
    else:
        store_url = request.getfixturevalue("redis_server").url
    port = free_port()
    config = write_config(directory, port, store_url)
    server = start_module_server(argv=serve_argv(config, "buyer"), port=port)
    with client(server.url) as http_client:
        yield Buyer(http_client, store_url, config, server.url)


def client(base_url: str) -> httpx.Client:
    """A client that keeps no cookie: each request sends only the cookies a test gives it."""
    jar = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return httpx.Client(base_url=base_url, timeout=60, cookies=jar)


def set_cookies(response: httpx.Response) -> dict[str, str]:
    found = {}
    for header in response.headers.get_list("set-cookie"):
        name, _, value = header.split(";")[0].partition("=")
        found[name] = value
    return found


def match(buyer: Buyer, gid: str, uid: str | None = None) -> str:
    """The browser's uid after a match of ``gid`` (a new one without ``uid``)."""
    headers = {} if uid is None else {"Cookie": f"buyer_uid={uid}"}
    response = buyer.client.get(f"/match?google_gid={gid}&google_cver=1", headers=headers)
    assert response.status_code == 200 and response.content.startswith(b"GIF89a")
    return uid or set_cookies(response)["buyer_uid"]


def page(buyer: Buyer, cookie: str | None) -> tuple[httpx.Response, str]:
    """``GET /optout`` with the buyer cookie ``cookie``, and the page's CSRF token."""
    headers = {} if cookie is None else {"Cookie": f"buyer_uid={cookie}"}
    response = buyer.client.get("/optout", headers=headers)
    token = set_cookies(response)["cm_optout_csrf"]
    assert f'name=csrf value="{token}"' in response.text
    return response, token


def post(
    buyer: Buyer, action: str, cookie: str | None, token: str | None, **headers: str
) -> httpx.Response:
    """A ``POST /optout`` as the page's form sends it: the token in the body and (from a page of
    this site only) in the Strict cookie."""
    cookies = [] if cookie is None else [f"buyer_uid={cookie}"]
    if token is not None:
        cookies.append(f"cm_optout_csrf={token}")
    sent = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Sec-Fetch-Site": "same-origin",
        "Origin": buyer.origin,
        **{k.replace("_", "-").title(): v for k, v in headers.items()},
    }
    if cookies:
        sent["Cookie"] = "; ".join(cookies)
    body = f"csrf={token or 'forged'}&action={action}"
    return buyer.client.post("/optout", content=body, headers=sent)


def notice(*gids: str, nid: str = NID) -> bytes:
    return encode_notice(OptOutNotice(id="n-1", nid=nid, google_gids=list(gids), time=0))


def send_notice(buyer: Buyer, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Cookiematch-Signature"] = signature
    return buyer.client.post("/exchange/optout", content=body, headers=headers)


def counter(buyer: Buyer, event: str, outcome: str) -> float:
    pattern = rf'^cookiematch_buyer_{event}_total\{{outcome="{outcome}"\}} (\S+)$'
    found = re.search(pattern, buyer.client.get("/metrics").text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def uid_bytes(uid: str) -> bytes:
    raw = parse_uid(uid)
    assert raw is not None
    return raw


# -- the opt-out page ---------------------------------------------------------------------------


def test_the_page_shows_what_is_stored_and_changes_nothing(buyer: Buyer) -> None:
    uid = match(buyer, "cGFnZS1naWQ")
    response, _ = page(buyer, uid)
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"
    assert "not opted out" in response.text and 'value="optout"' in response.text
    assert "match_by_uid" in response.text and "match_by_gid" in response.text
    # keys (SQLite): the store's TTL, twice match_ttl_days; buckets (Redis): no store TTL
    kept = "until erased" if buyer.store_url.startswith("redis") else "28 more days"
    assert response.text.count(kept) == 2
    assert "buyer_uid" not in set_cookies(response)
    assert len(buyer.stored(uids=[uid_bytes(uid)])) == 2
    fresh, _ = page(buyer, None)
    assert "Nothing is stored" in fresh.text and "buyer_uid" not in set_cookies(fresh)


def test_opting_out_erases_the_user_and_keeps_the_browser_out(buyer: Buyer) -> None:
    uid = match(buyer, "b3B0LW9sZA")
    match(buyer, "CAESEHQzSkjqVcFNjkyYcfsEXwM", uid)  # a new gid (key rotation): same uid
    other = match(buyer, "c29tZW9uZS1lbHNl")
    gids = ["b3B0LW9sZA", "CAESEHQzSkjqVcFNjkyYcfsEXwM"]
    assert buyer.stored(uids=[uid_bytes(uid)], gids=gids) != []
    before = counter(buyer, "optout_page", "opted_out")

    _, token = page(buyer, uid)
    done = post(buyer, "optout", uid, token)
    assert done.status_code == 200 and "is opted out" in done.text
    assert set_cookies(done)["buyer_uid"] == OPT_OUT
    assert buyer.stored(uids=[uid_bytes(uid)], gids=gids) == []
    assert len(buyer.stored(uids=[uid_bytes(other)])) == 2  # another browser is untouched
    assert counter(buyer, "optout_page", "opted_out") == before + 1

    # opted out: nothing is set or stored, whatever arrives
    out = {"Cookie": f"buyer_uid={OPT_OUT}"}
    matched = buyer.client.get("/match?google_gid=bmV3LWdpZA&google_cver=1", headers=out)
    assert matched.status_code == 200 and matched.content.startswith(b"GIF89a")
    pushed = buyer.client.get(
        "/push?google_gid=bmV3LWdpZA&google_cver=1&google_push=tok", headers=out
    )
    assert pushed.status_code == 302
    assert pushed.headers["location"] == f"{EXCHANGE}?google_nid={NID}&google_push=tok"
    tag = buyer.client.get("/matchtag", headers=out)
    assert tag.status_code == 204
    tag_image = buyer.client.get("/matchtag?format=redirect", headers=out)
    assert tag_image.status_code == 200 and tag_image.content.startswith(b"GIF89a")
    for response in (matched, pushed, tag, tag_image):
        assert "set-cookie" not in response.headers
    assert buyer.stored(gids=["bmV3LWdpZA"]) == []
    assert buyer.stored(uids=[uid_bytes(uid)], gids=gids) == []

    # undo: a fresh uid, matched as any browser
    shown, token = page(buyer, OPT_OUT)
    assert "is opted out" in shown.text and 'value="undo"' in shown.text
    undone = post(buyer, "undo", OPT_OUT, token)
    fresh = set_cookies(undone)["buyer_uid"]
    assert undone.status_code == 200 and fresh != uid and parse_uid(fresh) is not None
    match(buyer, "YWZ0ZXItdW5kbw", fresh)
    assert len(buyer.stored(uids=[uid_bytes(fresh)])) == 2


def test_a_post_that_is_not_from_the_page_changes_nothing(buyer: Buyer) -> None:
    uid = match(buyer, "Y3Jvc3Mtc2l0ZQ")
    _, token = page(buyer, uid)
    refused = [
        post(buyer, "optout", uid, None),  # cross-site: the Strict token cookie is not sent
        post(buyer, "optout", uid, token, sec_fetch_site="cross-site"),
        post(buyer, "optout", uid, token, origin="https://evil.example"),
    ]
    for response in refused:
        assert response.status_code == 403
        assert "nothing was changed" in response.text
        assert "buyer_uid" not in set_cookies(response)
    assert len(buyer.stored(uids=[uid_bytes(uid)])) == 2
    assert counter(buyer, "optout_page", "refused") >= 3


# -- the exchange's notices ---------------------------------------------------------------------


def test_a_signed_notice_erases_every_gid(buyer: Buyer) -> None:
    uid = match(buyer, "bm90aWNlZA")
    other = match(buyer, "bm90LW5vdGljZWQ")
    before = counter(buyer, "exchange_optout", "erased")
    body = notice("CAESEHQzSkjqVcFNjkyYcfsENOT", "bm90aWNlZA")  # every key version
    response = send_notice(buyer, body, sign(SECRET.encode(), body, int(time.time())))
    assert response.status_code == 204, response.text
    assert buyer.stored(uids=[uid_bytes(uid)], gids=["bm90aWNlZA"]) == []
    assert len(buyer.stored(uids=[uid_bytes(other)])) == 2
    assert counter(buyer, "exchange_optout", "erased") == before + 1
    again = send_notice(buyer, body, sign(SECRET.encode(), body, int(time.time())))
    assert again.status_code == 204  # nothing left: still done


def test_notices_that_do_not_check_out_erase_nothing(buyer: Buyer) -> None:
    uid = match(buyer, "a2VwdC1naWQ")
    body = notice("a2VwdC1naWQ")
    now = int(time.time())
    wrong_nid = notice("a2VwdC1naWQ", nid="someone-else")
    cases = [
        (body, None, 401),
        (body, sign(b"not-the-secret-0123456789", body, now), 401),
        (body, sign(SECRET.encode(), body, now - 3600), 401),  # stale: a replay
        (body, f"t={now},v1=zz", 401),
        (b"garbage", sign(SECRET.encode(), b"garbage", now), 400),
        (wrong_nid, sign(SECRET.encode(), wrong_nid, now), 400),
        (b"x" * 5000, sign(SECRET.encode(), b"x" * 5000, now), 413),
    ]
    for sent, signature, status in cases:
        response = send_notice(buyer, sent, signature)
        assert response.status_code == status, (status, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert len(buyer.stored(uids=[uid_bytes(uid)], gids=["a2VwdC1naWQ"])) == 2
    assert counter(buyer, "exchange_optout", "bad_signature") >= 4


# -- the admin API and the CLI ------------------------------------------------------------------


def test_admin_access_and_erasure_of_a_user(buyer: Buyer) -> None:
    uid = match(buyer, "YWRtaW4tZ2lk")
    path = f"/admin/v1/subjects/{uid}"

    def shown() -> dict[str, Any]:
        response = buyer.client.get(path, headers=AUTH)
        assert response.status_code == 200
        report: dict[str, Any] = response.json()
        assert [r["kind"] for r in report["records"]] == ["match_by_uid", "match_by_gid"]
        return report

    report = eventually(shown)
    assert report["role"] == "buyer" and report["subject"] == uid
    assert report["records"][1]["value"]["gid"] == "YWRtaW4tZ2lk"
    erased = buyer.client.delete(path, headers=AUTH)
    assert erased.status_code == 200
    assert erased.json()["erased"] == {"match_by_gid": 1, "match_by_uid": 1}
    assert buyer.stored(uids=[uid_bytes(uid)], gids=["YWRtaW4tZ2lk"]) == []
    assert buyer.client.get(path, headers=AUTH).json()["records"] == []
    bad = buyer.client.get("/admin/v1/subjects/not-a-uid", headers=AUTH)
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    assert buyer.client.delete(path).status_code == 401
    assert buyer.client.get(path).status_code == 401


def cli(buyer: Buyer, command: str, subject: str) -> dict[str, object]:
    """``cookiematch subject``; ``--`` before the ID, which may start with ``-``."""
    argv = [sys.executable, "-m", "cookiematch", "subject", command, "--config",
            str(buyer.config), "--role", "buyer", "--", subject]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_cli_shows_and_erases_a_user(buyer: Buyer) -> None:
    uid = match(buyer, "Y2xpLWdpZA")
    # a uid may start with "-": after "--" it is not an option (another uid than this one)
    dashed = "-" + ("B" if uid[1] == "A" else "A") + uid[2:]
    assert cli(buyer, "show", dashed)["records"] == []
    shown = cli(buyer, "show", uid)
    assert [r["kind"] for r in shown["records"]] == ["match_by_uid", "match_by_gid"]  # type: ignore[attr-defined]
    erased = cli(buyer, "erase", uid)
    assert erased["erased"] == {"match_by_gid": 1, "match_by_uid": 1}
    assert buyer.stored(uids=[uid_bytes(uid)], gids=["Y2xpLWdpZA"]) == []
    assert cli(buyer, "show", uid)["records"] == []


# -- without a secret; with a failed store --------------------------------------------------------


def test_without_a_secret_there_is_no_notice_route(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    port = free_port()
    config = write_config(tmp_path, port, f"sqlite:///{tmp_path / 'b.db'}", secret=False)
    server = start_server(argv=serve_argv(config, "buyer"), port=port)
    body = notice("bm8tc2VjcmV0")
    signature = sign(SECRET.encode(), body, int(time.time()))
    response = httpx.post(
        f"{server.url}/exchange/optout", content=body, headers={"Cookiematch-Signature": signature}
    )
    assert response.status_code == 404


def test_a_failed_store_answers_503_and_changes_nothing(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    require_redis()
    redis = RedisServer(tmp_path / "redis")
    try:
        port = free_port()
        config = write_config(tmp_path, port, redis.url)
        server = start_server(argv=serve_argv(config, "buyer"), port=port)
        with client(server.url) as http_client:
            buyer = Buyer(http_client, redis.url, config, server.url)
            uid = match(buyer, "ZG93bi1naWQ")
            _, token = page(buyer, uid)
            redis.kill9()
            body = notice("ZG93bi1naWQ")
            signature = sign(SECRET.encode(), body, int(time.time()))
            with ThreadPoolExecutor(3) as pool:  # each waits out the store's retry window
                shown = pool.submit(
                    http_client.get, "/optout", headers={"Cookie": f"buyer_uid={uid}"}
                )
                posted = pool.submit(post, buyer, "optout", uid, token)
                notified = pool.submit(send_notice, buyer, body, signature)
            for response in (shown.result(), posted.result()):
                assert response.status_code == 503 and "nothing was changed" in response.text
                assert "buyer_uid" not in set_cookies(response)
            assert notified.result().status_code == 503
            assert notified.result().headers["content-type"] == "application/problem+json"
    finally:
        redis.stop()
