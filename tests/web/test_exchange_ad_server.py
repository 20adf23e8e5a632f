"""``/ad`` end to end: a real ``cookiematch serve --role exchange`` process and a real bidder
process (the ``bidder_app`` factory below) that records every bid request it receives."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from cookiematch.protocol.cookies import parse_browser_id
from cookiematch.protocol.push import PushTokens
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.web.http import Request, Response
from cookiematch.web.router import App

from conftest import ServerProcess, free_port
from support.configs import ADMIN_TOKEN, serve_argv, write_exchange_config

HERE = Path(__file__).resolve().parent
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CIPHER = UserIdCipher({1: b"1" * 32})  # support.configs' KEY_V1
HOSTED = "Q29va2llIG51bWJlciAxIQ"  # "Cookie number 1!"
PIXEL_MATCH = re.compile(r'<img id="cm-pixel-match" src="([^"]+)"')


# -- the bidder process -------------------------------------------------------------------

MATCH_TAG = '<img src="{exchange}/pixel?google_nid=ad_network_xyz&google_cm">'
BIDS = {  # path -> (delay seconds, price or None for 204, markup)
    "/fast": (0.0, 2.0, "<p>FAST-AD</p>" + MATCH_TAG),
    "/hosted": (0.0, 5.0, "<p>HOSTED-AD</p>"),
    "/slow": (2.0, 100.0, "<p>SLOW-AD</p>"),
    "/capped": (0.0, None, ""),
}  # fmt: skip


def bidder_app() -> App:
    """A tiny OpenRTB bidder: behaviour per path (``BIDS``); requests logged as JSON lines."""
    log_path = os.environ["BIDDER_LOG"]
    exchange = os.environ["EXCHANGE_URL"]
    app = App()

    async def bid(request: Request) -> Response:
        body = json.loads(request.body)
        with open(log_path, "a") as log:
            log.write(json.dumps({"path": request.path, "request": body}) + "\n")
        delay, price, adm = BIDS[request.path]
        if delay:
            await asyncio.sleep(delay)
        if price is None:
            return Response.no_content()
        one = {"id": "1", "impid": "1", "price": price, "adm": adm.format(exchange=exchange)}
        return Response.json(200, {"id": body["id"], "seatbid": [{"bid": [one]}]})

    for path in BIDS:
        app.route(path, bid, methods=["POST"], read_body=True)
    return app


# -- fixtures -----------------------------------------------------------------------------


class Servers:
    def __init__(self, exchange: str, bidder_log: Path) -> None:
        self.exchange = exchange
        self.bidder_log = bidder_log

    def bid_requests(self, path: str, browser_id: bytes, nid: str) -> list[dict[str, Any]]:
        """The requests ``path`` received for this browser (its gid for ``nid``)."""
        gid = CIPHER.encrypt(browser_id, nid, 1)
        lines = self.bidder_log.read_text().splitlines() if self.bidder_log.exists() else []
        entries = [json.loads(line) for line in lines]
        return [
            e["request"]
            for e in entries
            if e["path"] == path and e["request"]["user"].get("id") == gid
        ]


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
    start_module_server: Callable[..., ServerProcess],
) -> Iterator[Servers]:
    directory = tmp_path_factory.mktemp("ad")
    exchange_port, bidder_port = free_port(), free_port()
    exchange = f"http://127.0.0.1:{exchange_port}"
    bidder = f"http://127.0.0.1:{bidder_port}"
    log = directory / "bids.jsonl"
    start_module_server(
        factory="test_exchange_ad_server:bidder_app",
        port=bidder_port,
        pythonpath=[HERE, HERE.parent],
        env={"BIDDER_LOG": str(log), "EXCHANGE_URL": exchange},
    )
    buyers = f"""
[[exchange.buyers]]
nid = "ad_network_xyz"
redirect_url = "{bidder}/match?id="
bidder_url = "{bidder}/fast"

[[exchange.buyers]]
nid = "cookie-monster"
redirect_url = "{bidder}/match?id="
hosted_match = true
require_hosted_match = true
bidder_url = "{bidder}/hosted"

[[exchange.buyers]]
nid = "slowdsp"
redirect_url = "{bidder}/match"
bidder_url = "{bidder}/slow"

[[exchange.buyers]]
nid = "cappeddsp"
redirect_url = "{bidder}/match"
bidder_url = "{bidder}/capped"
max_qps = 1

[[exchange.buyers]]
nid = "pushdsp"
redirect_url = "{bidder}/match"
push_url = "{bidder}/push?src=pm"
pixel_matching = true

[[exchange.publishers]]
id = "examplenews"

[[exchange.publishers]]
id = "private"
pixel_matching = false
"""
    config = write_exchange_config(
        directory, exchange_port, buyers=buyers, extra_exchange="auction_timeout_ms = 100"
    )
    argv = serve_argv(config, "exchange")
    start_module_server(argv=argv, port=exchange_port)
    with httpx.Client(base_url=exchange, timeout=5) as warm:  # first connections to bidders
        warm.get("/ad?pub=examplenews&slot=warmup")
    yield Servers(exchange, log)


@pytest.fixture
def client(servers: Servers) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=servers.exchange, timeout=5, follow_redirects=False) as http:
        yield http


class Browser:
    """A browser's exchange cookie, sent by hand (the test runs over plain http)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.cookie = ""

    def get(self, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        headers = dict(headers or {})
        if self.cookie:
            headers["Cookie"] = self.cookie
        response = self.client.get(url, headers=headers)
        set_cookie = response.headers.get("set-cookie")
        if set_cookie:
            self.cookie = set_cookie.split(";", 1)[0]
        return response

    @property
    def browser_id(self) -> bytes:
        found = parse_browser_id(self.cookie.partition("=")[2])
        assert found is not None
        return found


def stats(client: httpx.Client, nid: str) -> dict[str, Any]:
    response = client.get(f"/admin/v1/buyers/{nid}/stats", headers=AUTH)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def ad_div(page: str) -> str:
    found = re.search(r'<div id="cm-ad"[^>]*>.*?</div>', page, re.DOTALL)
    assert found is not None, page
    return found.group(0)


def pixel_match_url(page: str) -> str | None:
    found = PIXEL_MATCH.search(page)
    return html.unescape(found.group(1)) if found else None


# -- tests --------------------------------------------------------------------------------


def test_scenario_1_new_browser_gets_cookie_ad_and_match_tag(
    servers: Servers, client: httpx.Client
) -> None:
    jane = Browser(client)
    response = jane.get("/ad?pub=examplenews&slot=top")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.elapsed.total_seconds() < 1.0  # the 2 s bidder did not hold the ad
    set_cookie = response.headers["set-cookie"]
    for attribute in ("cm_id=", "Secure", "HttpOnly", "SameSite=None", "Path=/", "Max-Age="):
        assert attribute in set_cookie
    ad = ad_div(response.text)
    assert 'data-nid="ad_network_xyz"' in ad and "FAST-AD" in ad  # not SLOW-AD at 100.0
    assert "google_nid=ad_network_xyz&google_cm" in ad  # the buyer's match tag, served
    assert pixel_match_url(response.text) is None  # not on a cookie's first impression

    [sent] = servers.bid_requests("/fast", jane.browser_id, "ad_network_xyz")
    assert sent["user"]["ext"] == {"cookie_version": 1, "cookie_age_seconds": 0}
    assert "buyeruid" not in sent["user"]
    assert sent["imp"][0]["tagid"] == "top" and sent["tmax"] == 100
    assert sent["site"]["publisher"]["id"] == "examplenews"
    assert servers.bid_requests("/slow", jane.browser_id, "slowdsp")  # asked, too late
    assert not servers.bid_requests("/hosted", jane.browser_id, "cookie-monster")

    # Steps 6-7: the match tag redirects the buyer's gid for Jane's cookie.
    matched = jane.get("/pixel?google_nid=ad_network_xyz&google_cm")
    assert matched.status_code == 302
    gid = dict(parse_qsl(urlsplit(matched.headers["location"]).query))["google_gid"]
    assert gid == sent["user"]["id"]


def test_bid_requests_carry_the_browser_address_a_trusted_proxy_forwarded(
    servers: Servers, client: httpx.Client
) -> None:
    behind_proxy = Browser(client)  # the test client's 127.0.0.1 is a trusted proxy
    behind_proxy.get(
        "/ad?pub=examplenews&slot=top",
        headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.5"},
    )
    [sent] = servers.bid_requests("/fast", behind_proxy.browser_id, "ad_network_xyz")
    assert sent["device"]["ip"] == "203.0.113.5"  # the left-most address is the browser's word

    direct = Browser(client)
    direct.get("/ad?pub=examplenews&slot=top")
    [sent] = servers.bid_requests("/fast", direct.browser_id, "ad_network_xyz")
    assert sent["device"]["ip"] == "127.0.0.1"


def test_scenario_2_and_pixel_matching(servers: Servers, client: httpx.Client) -> None:
    jane = Browser(client)
    jane.get("/ad?pub=examplenews&slot=top")
    time.sleep(1.1)
    response = jane.get("/ad?pub=examplenews&slot=top")
    assert "set-cookie" not in response.headers  # she has one
    assert "FAST-AD" in ad_div(response.text)
    sent = servers.bid_requests("/fast", jane.browser_id, "ad_network_xyz")
    assert len(sent) == 2 and sent[1]["user"]["ext"]["cookie_age_seconds"] >= 1

    url = pixel_match_url(response.text)
    assert url is not None and url.startswith("http://127.0.0.1:")  # the bidder's push_url
    params = dict(parse_qsl(urlsplit(url).query))
    assert urlsplit(url).path == "/push" and params["src"] == "pm"
    assert CIPHER.decrypt(params["google_gid"], "pushdsp", int(params["google_cver"])) == (
        jane.browser_id
    )
    claim = PushTokens(CIPHER).verify(params["google_push"], "pushdsp", int(time.time()))
    assert claim.browser_id == jane.browser_id

    before = stats(client, "pushdsp")
    returned = jane.get(f"/pixel?google_nid=pushdsp&google_push={params['google_push']}")
    assert returned.status_code == 200 and returned.headers["content-type"] == "image/gif"
    after = stats(client, "pushdsp")
    assert after["pushes_returned"] == before["pushes_returned"] + 1
    assert after["pushes_issued"] >= 1
    replayed = jane.get(f"/pixel?google_nid=pushdsp&google_push={params['google_push']}")
    assert replayed.status_code == 302  # refused as an invalid token is
    assert dict(parse_qsl(urlsplit(replayed.headers["location"]).query))["google_error"] == "5"
    assert stats(client, "pushdsp")["pushes_returned"] == after["pushes_returned"]
    metrics = client.get("/metrics").text
    assert 'cookiematch_pixel_outcomes_total{nid="pushdsp",outcome="push_replayed"} 1.0' in metrics
    again = jane.get("/ad?pub=examplenews&slot=top")
    assert pixel_match_url(again.text) is None  # matched: not introduced again for 14 days
    private = Browser(client)
    private.cookie = jane.cookie
    assert pixel_match_url(private.get("/ad?pub=private&slot=top").text) is None


def test_hosted_match_data_reaches_the_hosted_buyer(servers: Servers, client: httpx.Client) -> None:
    before = stats(client, "cookie-monster")
    jane = Browser(client)
    jane.get("/ad?pub=examplenews&slot=top")
    assert not servers.bid_requests("/hosted", jane.browser_id, "cookie-monster")
    stored = jane.get(f"/pixel?google_nid=cookie-monster&google_hm={HOSTED}")
    assert stored.status_code == 302 and "google_hm" not in stored.headers["location"]
    response = jane.get("/ad?pub=examplenews&slot=top")
    [sent] = servers.bid_requests("/hosted", jane.browser_id, "cookie-monster")
    assert sent["user"]["buyeruid"] == HOSTED
    fast = servers.bid_requests("/fast", jane.browser_id, "ad_network_xyz")
    assert "buyeruid" not in fast[-1]["user"]
    assert 'data-nid="cookie-monster"' in ad_div(response.text)
    after = stats(client, "cookie-monster")  # one request sent, carrying the hosted match
    assert after["bid_requests"] - before["bid_requests"] == 1
    assert after["bid_requests_matched"] - before["bid_requests_matched"] == 1
    assert after["hosted_match_rate"] is not None


def test_frequency_capping_violation_is_counted(client: httpx.Client) -> None:
    jane = Browser(client)
    jane.get("/ad?pub=examplenews&slot=top")
    before = stats(client, "ad_network_xyz")["frequency_cap_violations"]
    for _ in range(2):
        assert jane.get("/pixel?google_nid=ad_network_xyz&google_cm").status_code == 302
    deadline = time.monotonic() + 5
    while stats(client, "ad_network_xyz")["frequency_cap_violations"] == before:
        assert time.monotonic() < deadline, "violation never counted"
        time.sleep(0.1)
    assert stats(client, "ad_network_xyz")["frequency_cap_violations"] == before + 1


def test_max_qps_throttles_and_timeouts_are_counted(client: httpx.Client) -> None:
    before = stats(client, "cappeddsp")
    slow_before = stats(client, "slowdsp")["timeouts"]
    for _ in range(5):
        assert client.get("/ad?pub=examplenews&slot=burst").status_code == 200
    after = stats(client, "cappeddsp")
    sent = after["bid_requests"] - before["bid_requests"]
    throttled = after["bid_requests_throttled"] - before["bid_requests_throttled"]
    assert sent + throttled == 5 and throttled >= 2
    assert after["max_qps"] == 1
    assert stats(client, "slowdsp")["timeouts"] >= slow_before + 5
    listing = client.get("/admin/v1/stats", headers=AUTH).json()["buyers"]
    assert {b["nid"] for b in listing} >= {"cappeddsp", "pushdsp", "ad_network_xyz"}


@pytest.mark.parametrize(
    "query",
    ["", "pub=examplenews", "pub=nobody&slot=top", "pub=examplenews&slot=top&w=0",
     "pub=examplenews&slot=%zz", "pub=examplenews&slot=" + "s" * 65],
)  # fmt: skip
def test_bad_ad_requests_are_400_text(client: httpx.Client, query: str) -> None:
    response = client.get(f"/ad?{query}")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")


def test_admin_stats_errors(client: httpx.Client) -> None:
    assert client.get("/admin/v1/buyers/pushdsp/stats").status_code == 401
    missing = client.get("/admin/v1/buyers/nobody/stats", headers=AUTH)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert client.post("/ad?pub=examplenews&slot=top").status_code == 405
