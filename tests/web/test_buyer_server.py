"""The buyer role as a real ``cookiematch serve --role buyer`` process, over HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from cookiematch.buyer.ids import format_uid, parse_uid
from cookiematch.buyer.matchtable import MatchTable
from cookiematch.exchange.bids import parse_response
from cookiematch.protocol.openrtb import decode_bid_request
from cookiematch.storage import open_store

from conftest import ServerProcess, free_port, load_then_kill
from support.configs import serve_argv
from support.eventually import eventually
from support.openrtb import EXAMPLES

TOKEN = "buyer-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXCHANGE = "https://exchange.example/pixel"
GID = "dGhpcyBpcyBhbiBleGFtGxl"
UID_22 = "AAECAwQFBgcICQoLDA0ODw"


def buyer_config(directory: Path, port: int, *, nid: str, hosted: bool) -> Path:
    text = f"""
[store]
url = "sqlite:///{directory / (nid + ".db")}"

[buyer]
listen = "127.0.0.1:{port}"
nid = "{nid}"
exchange_url = "{EXCHANGE}"
public_url = "http://127.0.0.1:{port}"
admin_token = "{TOKEN}"
response = "{"204" if hosted else "gif"}"
hosted_match = {"true" if hosted else "false"}

[[buyer.campaigns]]
id = "retarget"
audience = "matched"
matched_bid_price = 4.0
adm = "<p>welcome back</p>${{MATCH_TAG}}"

[[buyer.campaigns]]
id = "prospect"
bid_price = 0.5
adm = "<p>hello</p>"
"""
    path = directory / f"{nid}.toml"
    path.write_text(text)
    return path


def start_buyer(
    start: Callable[..., ServerProcess], directory: Path, *, nid: str, hosted: bool
) -> ServerProcess:
    port = free_port()
    config = buyer_config(directory, port, nid=nid, hosted=hosted)
    argv = serve_argv(config, "buyer")
    return start(argv=argv, port=port)


@pytest.fixture(scope="module")
def own(
    start_module_server: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    server = start_buyer(start_module_server, tmp_path_factory.mktemp("own"), nid="dsp",
                         hosted=False)  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def hosted(
    start_module_server: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    server = start_buyer(start_module_server, tmp_path_factory.mktemp("hosted"),
                         nid="cookie-monster", hosted=True)  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def cookie_of(response: httpx.Response, name: str = "buyer_uid") -> str | None:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(name + "="):
            return header.split(";")[0].split("=", 1)[1]
    return None


def assert_pixel(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/gif"
    assert response.content.startswith(b"GIF89a")


def counters(client: httpx.Client) -> dict[str, dict[str, int]]:
    response = client.get("/admin/v1/stats", headers=AUTH)
    assert response.status_code == 200
    result: dict[str, dict[str, int]] = response.json()["counters"]
    return result


def lookup(client: httpx.Client, gid: str) -> httpx.Response:
    return client.get(f"/admin/v1/matches/{gid}", headers=AUTH)


def test_match_sets_the_cookie_and_upserts_both_ways(own: httpx.Client) -> None:
    gid = "Z2lkLW9uZQ"
    response = own.get(f"/match?id=&google_gid={gid}&google_cver=1&extra=x")
    assert_pixel(response)
    header = response.headers["set-cookie"]
    for attribute in ("Secure", "HttpOnly", "SameSite=None", "Path=/", "Max-Age="):
        assert attribute in header
    uid = cookie_of(response)
    assert uid is not None and len(uid) == 22
    entry = lookup(own, gid).json()
    assert entry["buyer_uid"] == uid and entry["cver"] == 1 and not entry["stale"]
    assert set(entry) >= {"buyer_uid", "cver", "updated_at"}
    reverse = own.get(f"/admin/v1/uids/{uid}", headers=AUTH).json()
    assert reverse["gid"] == gid

    # the same browser comes back with a new cookie version: same uid, updated entry
    again = own.get(
        f"/match?google_gid={gid}&google_cver=2", headers={"Cookie": f"buyer_uid={uid}"}
    )
    assert_pixel(again)

    def updated() -> None:
        assert lookup(own, gid).json()["cver"] == 2

    eventually(updated)
    assert lookup(own, gid).json()["buyer_uid"] == uid


def test_google_error_is_a_pixel_without_write_counted_by_code(own: httpx.Client) -> None:
    before = counters(own)["match"].get("error_3", 0)
    response = own.get("/match?id=&google_error=3")
    assert_pixel(response)
    assert "set-cookie" not in response.headers
    assert counters(own)["match"]["error_3"] == before + 1
    metrics = own.get("/metrics").text
    assert 'cookiematch_buyer_match_total{outcome="error_3"}' in metrics


@pytest.mark.parametrize(
    "query",
    [
        "google_gid=%zz&google_cver=1",
        "google_gid=abc%00&google_cver=1",
        "google_gid=a%2Bb%2F&google_cver=1",
        f"google_gid={'A' * 200}&google_cver=1",
        "google_gid=QUJD&google_cver=-1",
        "google_gid=QUJD",
        "",
        "google_gid&google_cver",
        "a=%ff",
    ],
)
def test_bad_input_is_a_pixel_and_writes_nothing(own: httpx.Client, query: str) -> None:
    response = own.get(f"/match?{query}")
    assert_pixel(response)
    assert lookup(own, "QUJD").status_code == 404


def test_oversized_cookie_header_is_a_pixel(own: httpx.Client) -> None:
    response = own.get(
        f"/match?google_gid={GID}&google_cver=1", headers={"Cookie": "a=" + "b" * 9000}
    )
    assert_pixel(response)
    assert "set-cookie" not in response.headers


def test_matchtag_only_when_the_browser_needs_matching(own: httpx.Client) -> None:
    first = own.get("/matchtag")
    assert first.status_code == 200
    assert first.json() == {"url": f"{EXCHANGE}?google_nid=dsp&google_cm", "reason": "no_entry"}
    uid = cookie_of(first)
    assert uid is not None
    cookie = {"Cookie": f"buyer_uid={uid}"}
    redirect = own.get("/matchtag?format=redirect", headers=cookie)
    assert redirect.status_code == 302
    assert redirect.headers["location"] == f"{EXCHANGE}?google_nid=dsp&google_cm"
    # the exchange redirects back to /match: now the entry is fresh
    assert_pixel(own.get("/match?google_gid=ZnJlc2g&google_cver=1", headers=cookie))
    fresh = own.get("/matchtag", headers=cookie)
    assert fresh.status_code == 204 and fresh.content == b""
    assert_pixel(own.get("/matchtag?format=redirect", headers=cookie))
    assert own.get("/matchtag?a=%zz").status_code == 400


def test_push_redirects_back_to_the_exchange_with_the_same_value(own: httpx.Client) -> None:
    push = "AQAAAAB-_abc"
    response = own.get(f"/push?google_gid=cHVzaGVk&google_cver=1&google_push={push}")
    assert response.status_code == 302
    assert response.headers["location"] == f"{EXCHANGE}?google_nid=dsp&google_push={push}"
    assert cookie_of(response) is not None
    assert lookup(own, "cHVzaGVk").json()["buyer_uid"] == cookie_of(response)


def test_push_value_is_re_encoded_never_injected(own: httpx.Client) -> None:
    response = own.get("/push?google_gid=QUJD&google_cver=1&google_push=a%22%3C%3E%20b%26c")
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(EXCHANGE + "?")
    assert dict(parse_qsl(urlsplit(location).query))["google_push"] == 'a"<> b&c'
    crlf = own.get("/push?google_gid=QUJD&google_cver=1&google_push=a%0d%0aSet-Cookie:x")
    assert_pixel(crlf)


def test_push_without_google_push_is_only_a_pixel(own: httpx.Client) -> None:
    response = own.get(f"/push?google_gid={GID}&google_cver=1")
    assert_pixel(response)
    assert "location" not in response.headers


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("request-*.json")), ids=lambda p: p.stem)
def test_every_iab_example_gets_a_bid_or_no_bid(own: httpx.Client, path: Path) -> None:
    response = own.post("/bid", content=path.read_bytes(),
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code in (200, 204), response.text
    assert response.headers["x-openrtb-version"] == "2.6"
    if response.status_code == 200:
        body = response.json()
        assert body["id"] == json.loads(path.read_bytes())["id"]
        bid = body["seatbid"][0]["bid"][0]
        assert bid["price"] > 0 and bid["adm"] and bid["impid"] == "1"


def bid_request(user: dict[str, str]) -> dict[str, object]:
    return {"id": "req-1", "tmax": 200, "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}],
            "user": {**user, "ext": {"cookie_version": 1}}}  # fmt: skip


def test_matched_user_gets_the_retargeting_bid(own: httpx.Client) -> None:
    assert_pixel(own.get("/match?google_gid=bWF0Y2hlZA&google_cver=1"))
    response = own.post("/bid", json=bid_request({"id": "bWF0Y2hlZA"}))
    assert response.status_code == 200
    bid = response.json()["seatbid"][0]["bid"][0]
    assert bid["cid"] == "retarget" and bid["price"] == 4.0
    assert bid["adm"] == "<p>welcome back</p>"  # fresh match: no match tag

    unknown = own.post("/bid", json=bid_request({"id": "dW5rbm93bg"}))
    bid = unknown.json()["seatbid"][0]["bid"][0]
    assert bid["cid"] == "prospect" and "google_nid=dsp&amp;google_cm" in bid["adm"]

    recent = own.get("/admin/v1/bids/recent?limit=2", headers=AUTH).json()["bids"]
    assert [r["request_id"] for r in recent] == ["req-1", "req-1"]
    assert recent[0]["matched"] and not recent[1]["matched"]
    # the bid log keeps no ID of the user (docs/privacy.md)
    assert not {"user_id", "buyeruid", "user_ext", "buyer_uid"} & {k for r in recent for k in r}


def test_a_won_bid_is_noticed_once_through_its_signed_nurl(own: httpx.Client) -> None:
    body = json.dumps({**bid_request({"id": "d29uLWJpZA"}), "id": "won 1&x"}).encode()
    before = counters(own)["auction"]
    response = own.post("/bid", content=body)
    assert response.status_code == 200
    # the exchange's own parsing substitutes the macros of the winning bid's nurl
    (bid,) = parse_response("dsp", response.content, decode_bid_request(body))
    assert bid.nurl is not None and bid.bid_id == "won 1&x-1"
    ids = "auction=won%201%26x&bid=won%201%26x-1&imp=1&t="
    assert bid.nurl.startswith(f"{own.base_url}/win?{ids}")  # the ids written in, encoded
    assert "&price=0.5&cur=USD&sig=" in bid.nurl
    params = dict(parse_qsl(urlsplit(bid.nurl).query))
    sig, issued = params["sig"], params["t"]
    assert len(sig) == 22 and issued.isdigit()

    assert own.get(bid.nurl).status_code == 204
    assert own.get(bid.nurl).status_code == 204  # the same notice again: a duplicate
    forged = [
        bid.nurl.replace("auction=won%201%26x", "auction=won%202%26x"),  # another auction
        bid.nurl.replace("&imp=1&", "&imp=2&"),  # another impression
        bid.nurl.replace("bid=won%201%26x-1", "bid=other-1"),
        bid.nurl.replace(f"t={issued}", f"t={int(issued) - 1}"),  # another time
        bid.nurl.replace(f"&sig={sig}", ""),  # no signature
        bid.nurl.replace(f"sig={sig}", f"sig={sig[::-1]}"),
        bid.nurl.replace(f"sig={sig}", "sig=AAAAAAAAAAAAAAAAAAAAAA"),
        bid.nurl.replace("price=0.5", "price=${AUCTION_PRICE}"),  # not substituted
        bid.nurl.replace("price=0.5", "price=nan"),
        bid.nurl.replace("price=0.5", "price=-1"),
        bid.nurl.replace("cur=USD", "cur=EUR"),
        f"{own.base_url}/win?auction=won&bid=won-1&imp=1&price=0.5&cur=USD",  # the old form
        f"{own.base_url}/win",
        f"{own.base_url}/win?auction=%zz",  # not a query
    ]
    for url in forged:
        refused = own.get(url)
        assert refused.status_code == 400 and refused.text.startswith("Bad request"), url
    after = counters(own)["auction"]
    assert after.get("bid", 0) == before.get("bid", 0) + 1
    assert after.get("won", 0) == before.get("won", 0) + 1
    assert after.get("duplicate_notice", 0) == before.get("duplicate_notice", 0) + 1
    assert after.get("invalid_notice", 0) == before.get("invalid_notice", 0) + len(forged)
    metrics = own.get("/metrics", headers=AUTH).text
    assert 'cookiematch_buyer_auction_total{outcome="won"}' in metrics
    assert 'cookiematch_buyer_auction_total{outcome="duplicate_notice"}' in metrics


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b'{"id": 5}', b"[1]"])
def test_bad_bid_requests_are_400(own: httpx.Client, body: bytes) -> None:
    response = own.post("/bid", content=body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")


def test_bid_method_and_size_limits(own: httpx.Client) -> None:
    assert own.get("/bid").status_code == 405
    assert own.post("/bid", content=b" " * (300 * 1024)).status_code == 413


def test_admin_needs_the_token(own: httpx.Client) -> None:
    assert own.get("/admin/v1/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
        response = own.get(f"/admin/v1/matches/{GID}", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
    missing = lookup(own, "bm90LXRoZXJl")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert lookup(own, "bad%21gid").status_code == 404
    assert own.get("/admin/v1/bids/recent?limit=x", headers=AUTH).status_code == 400


def test_hosted_buyer_204_push_with_google_hm_and_buyeruid_bids(hosted: httpx.Client) -> None:
    response = hosted.get("/match?google_gid=aG9zdGVk&google_cver=1")
    assert response.status_code == 204
    uid = cookie_of(response, "buyer_uid")
    assert uid is not None
    push = hosted.get("/push?google_gid=aG9zdGVk&google_cver=1&google_push=tok",
                      headers={"Cookie": f"buyer_uid={uid}"})  # fmt: skip
    assert push.status_code == 302
    assert push.headers["location"] == (
        f"{EXCHANGE}?google_nid=cookie-monster&google_push=tok&google_hm={uid}"
    )
    tag = hosted.get("/matchtag").json()["url"]
    assert "&google_cm&google_hm=" in tag

    buyeruid = base64.urlsafe_b64encode(base64.urlsafe_b64decode(UID_22 + "==")).decode()
    bid = hosted.post("/bid", json=bid_request({"id": "b3RoZXI", "buyeruid": buyeruid}))
    assert bid.status_code == 200
    assert bid.json()["seatbid"][0]["bid"][0]["cid"] == "retarget"
    unknown = hosted.post("/bid", json=bid_request({"id": "b3RoZXI"}))
    adm = unknown.json()["seatbid"][0]["bid"][0]["adm"]
    assert "/matchtag?format=redirect" in adm


def test_acknowledged_matches_survive_kill_9(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """Every /match answered with its cookie is in the match table after kill -9 of the
    server: browsers with a uid (the direct path's common case) and a third without a cookie
    (a new uid each time), each walking through gids; the last acknowledged pairing of each
    uid (or a later one) is stored both ways."""
    server = start_buyer(start_server, tmp_path, nid="dsp", hosted=False)
    acknowledged: list[tuple[bytes, str]] = []

    async def browser(number: int, http: httpx.AsyncClient) -> None:
        uid = os.urandom(16)
        for write in range(300):
            gid = f"b{number:02d}w{write:04d}"
            cookie = {} if number % 3 == 0 else {"Cookie": f"buyer_uid={format_uid(uid)}"}
            try:
                response = await http.get(
                    f"{server.url}/match?google_gid={gid}&google_cver=1", headers=cookie
                )
            except httpx.HTTPError:
                return
            value = cookie_of(response)
            if response.status_code == 200 and value is not None:
                acked = parse_uid(value)
                assert acked is not None and (number % 3 == 0 or acked == uid)
                acknowledged.append((acked, gid))

    load_then_kill(server, browser, acknowledged)
    latest = dict(acknowledged)  # each browser's matches are sequential: the last ack wins

    async def check() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'dsp.db'}")
        table = MatchTable(store, "dsp", ttl_seconds=86400.0, clock=time.time)
        try:
            for uid, gid in latest.items():
                entry = await table.by_uid(uid)
                assert entry is not None and entry.gid[:3] == gid[:3] and entry.gid >= gid
                forward = await table.by_gid(entry.gid)
                assert forward is not None and forward.uid == uid
        finally:
            await store.close()

    assert len(acknowledged) >= 300
    asyncio.run(check())
