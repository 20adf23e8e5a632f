"""The exchange's privacy enforcement through a real ``cookiematch serve`` process and a real
bidder process that records the bid requests it receives (docs/privacy.md, "Enforcement: the
exchange")."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest

from cookiematch.protocol.userid import UserIdCipher
from cookiematch.web.http import Request, Response
from cookiematch.web.router import App
from protocol.tcf_builder import core, id_bits, vendor_bitfield

from conftest import ServerProcess, free_port
from support.configs import serve_argv, write_exchange_config

HERE = Path(__file__).resolve().parent
CIPHER = UserIdCipher({1: b"1" * 32})  # support.configs' KEY_V1
XYZ, MONSTER, PUSHER = 32, 50, 70  # the buyers' GVL vendor IDs
HOSTED = base64.urlsafe_b64encode(b"hosted!").decode().rstrip("=")


def tc(*vendors: int) -> str:
    return core(
        purpose_consents=id_bits(range(1, 11), 24), vendor_consents=vendor_bitfield(80, vendors)
    )


EVERYONE = tc(XYZ, MONSTER, PUSHER)
ONLY_PUSHER = tc(PUSHER)
NOT_PUSHER = tc(XYZ, MONSTER)
CONSENT = f"gdpr=1&gdpr_consent={EVERYONE}"
REFUSALS = [  # (query, headers): sync refused for ad_network_xyz and cookie-monster
    ("gdpr=1", {}),
    ("gdpr=1&gdpr_consent=AAAA", {}),
    (f"gdpr=1&gdpr_consent={ONLY_PUSHER}", {}),
    ("us_privacy=1YYN", {}),
    ("", {"Sec-GPC": "1"}),
    ("gdpr=maybe", {}),  # malformed: read as "GDPR applies", and there is no TC string
    ("us_privacy=1%2B%2B%2B", {}),  # malformed: an undecodable US Privacy string
]
PIXEL_MATCH = re.compile(r'<img id="cm-pixel-match" src="([^"]+)"')


# -- the bidder process -------------------------------------------------------------------


def bidder_app() -> App:
    """Answers no bid; logs every bid request as a JSON line."""
    log_path = os.environ["BIDDER_LOG"]
    app = App()

    async def bid(request: Request) -> Response:
        with open(log_path, "a") as log:
            log.write(json.dumps({"path": request.path, "request": json.loads(request.body)}))
            log.write("\n")
        return Response.no_content()

    for path in ("/xyz", "/monster"):
        app.route(path, bid, methods=["POST"], read_body=True)
    return app


class Servers:
    def __init__(self, exchange: str, bidder_log: Path) -> None:
        self.exchange = exchange
        self.bidder_log = bidder_log

    def bid_requests(self, slot: str) -> dict[str, dict[str, Any]]:
        """Bidder path -> the bid request it received for the ad slot ``slot``."""
        lines = self.bidder_log.read_text().splitlines() if self.bidder_log.exists() else []
        found = {}
        for entry in map(json.loads, lines):
            if entry["request"]["imp"][0]["tagid"] == slot:
                found[entry["path"]] = entry["request"]
        return found


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
    start_module_server: Callable[..., ServerProcess],
) -> Iterator[Servers]:
    directory = tmp_path_factory.mktemp("privacy")
    exchange_port, bidder_port = free_port(), free_port()
    bidder = f"http://127.0.0.1:{bidder_port}"
    log = directory / "bids.jsonl"
    start_module_server(
        factory="test_exchange_privacy_server:bidder_app",
        port=bidder_port,
        pythonpath=[HERE, HERE.parent],
        env={"BIDDER_LOG": str(log)},
    )
    buyers = f"""
[[exchange.buyers]]
nid = "ad_network_xyz"
redirect_url = "http://ad.network.com/pixel?id="
bidder_url = "{bidder}/xyz"
gvl_vendor_id = {XYZ}

[[exchange.buyers]]
nid = "cookie-monster"
redirect_url = "http://cookie-monster.com/pixel?id="
hosted_match = true
require_hosted_match = true
bidder_url = "{bidder}/monster"
gvl_vendor_id = {MONSTER}

[[exchange.buyers]]
nid = "pushdsp"
redirect_url = "http://push.example/match"
push_url = "http://push.example/push"
pixel_matching = true
gvl_vendor_id = {PUSHER}

[[exchange.publishers]]
id = "examplenews"
"""
    config = write_exchange_config(directory, exchange_port, buyers=buyers)
    argv = serve_argv(config, "exchange")
    start_module_server(argv=argv, port=exchange_port)
    exchange = f"http://127.0.0.1:{exchange_port}"
    with httpx.Client(base_url=exchange, timeout=5) as warm:  # first connections to the bidder
        warm.get("/ad?pub=examplenews&slot=warmup")
    yield Servers(exchange, log)


@pytest.fixture
def client(servers: Servers) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=servers.exchange, timeout=5, follow_redirects=False) as http:
        yield http


def new_cookie(client: httpx.Client) -> str:
    """A browser's exchange cookie, set through a match tag without privacy signals."""
    first = client.get("/pixel?google_nid=ad_network_xyz&google_cm&google_sc")
    return first.headers["set-cookie"].split(";", 1)[0]


def browser_id(cookie: str) -> bytes:
    padded = cookie.partition("=")[2] + "=="
    return base64.urlsafe_b64decode(padded)


def location_params(response: httpx.Response) -> list[tuple[str, str]]:
    assert response.status_code == 302, response.text
    return parse_qsl(urlsplit(response.headers["location"]).query, keep_blank_values=True)


def as_sent(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


# -- /pixel -------------------------------------------------------------------------------


def test_consent_leaves_the_match_tag_as_it_was(client: httpx.Client) -> None:
    first = client.get(f"/pixel?google_nid=ad_network_xyz&google_cm&google_sc&{CONSENT}")
    assert first.status_code == 302 and first.headers["location"].startswith("/pixel?")
    cookie = first.headers["set-cookie"].split(";", 1)[0]
    second = client.get(first.headers["location"], headers={"Cookie": cookie})
    params = location_params(second)
    assert params[:3] == [("id", ""), *as_sent(CONSENT)]  # the buyer learns the signals
    assert CIPHER.decrypt(dict(params)["google_gid"], "ad_network_xyz", 1) == browser_id(cookie)


@pytest.mark.parametrize(("query", "headers"), REFUSALS)
def test_refusal_sets_no_cookie_gives_no_gid_and_says_error_1(
    client: httpx.Client, query: str, headers: dict[str, str]
) -> None:
    cookie = new_cookie(client)
    refused = client.get(
        f"/pixel?google_nid=ad_network_xyz&google_cm&{query}", headers={**headers, "Cookie": cookie}
    )
    assert location_params(refused) == [("id", ""), *as_sent(query), ("google_error", "1")]
    assert refused.headers["location"].startswith("http://ad.network.com/pixel?")
    no_cookie = client.get(
        f"/pixel?google_nid=ad_network_xyz&google_cm&google_sc&{query}", headers=headers
    )
    assert "set-cookie" not in no_cookie.headers
    assert location_params(no_cookie) == [("id", ""), *as_sent(query), ("google_error", "1")]


def test_signals_are_read_when_the_extras_are_dropped_for_size(client: httpx.Client) -> None:
    big = "x" * 1100
    response = client.get(
        f"/pixel?google_nid=ad_network_xyz&google_cm&big={big}&gdpr=1",
        headers={"Cookie": new_cookie(client)},
    )
    # the other extras are dropped, the privacy parameter still reaches the buyer
    assert location_params(response) == [("id", ""), ("gdpr", "1"), ("google_error", "1")]


def test_a_refused_hosted_match_is_not_written(servers: Servers, client: httpx.Client) -> None:
    """cookie-monster bids only on browsers with its hosted match data (``/ad`` tells)."""
    answers = {}
    for name, query in (("refused", f"gdpr=1&gdpr_consent={ONLY_PUSHER}"), ("allowed", CONSENT)):
        cookie = new_cookie(client)
        answers[name] = client.get(
            f"/pixel?google_nid=cookie-monster&google_hm={HOSTED}&{query}",
            headers={"Cookie": cookie},
        )
        client.get(f"/ad?pub=examplenews&slot=hm-{name}", headers={"Cookie": cookie})
    assert location_params(answers["refused"])[-1] == ("google_error", "1")
    assert "/monster" not in servers.bid_requests("hm-refused")
    assert location_params(answers["allowed"]) == [("id", ""), *as_sent(CONSENT)]  # written
    assert servers.bid_requests("hm-allowed")["/monster"]["user"]["buyeruid"] == HOSTED


# -- /ad ----------------------------------------------------------------------------------


def test_bid_requests_carry_regs_and_consent_and_ids_where_allowed(
    servers: Servers, client: httpx.Client
) -> None:
    cookie = new_cookie(client)
    query = f"gdpr=1&gdpr_consent={quote(EVERYONE)}&us_privacy=1NNN"
    response = client.get(f"/ad?pub=examplenews&slot=consent&{query}", headers={"Cookie": cookie})
    assert response.status_code == 200
    sent = servers.bid_requests("consent")["/xyz"]
    assert sent["regs"] == {"gdpr": 1, "us_privacy": "1NNN"}
    assert sent["user"]["consent"] == EVERYONE
    assert CIPHER.decrypt(sent["user"]["id"], "ad_network_xyz", 1) == browser_id(cookie)
    assert sent["device"]["ip"] == "127.0.0.1"


@pytest.mark.parametrize(("query", "headers"), REFUSALS)
def test_refused_personalisation_sends_no_user_id_and_a_truncated_address(
    servers: Servers, client: httpx.Client, query: str, headers: dict[str, str]
) -> None:
    slot = "refused-" + hashlib.sha256(f"{query}{headers}".encode()).hexdigest()[:16]
    response = client.get(
        f"/ad?pub=examplenews&slot={slot}&{query}",
        headers={**headers, "Cookie": new_cookie(client), "X-Forwarded-For": "198.51.100.23"},
    )
    assert response.status_code == 200
    sent = servers.bid_requests(slot)["/xyz"]
    assert not {"id", "buyeruid", "ext"} & set(sent["user"])
    assert sent["device"]["ip"] == "198.51.100.0"


def test_a_refused_cookie_is_not_set_by_an_ad(servers: Servers, client: httpx.Client) -> None:
    response = client.get("/ad?pub=examplenews&slot=nocookie&gdpr=1&gdpr_consent=AAAA")
    assert response.status_code == 200 and "set-cookie" not in response.headers
    sent = servers.bid_requests("nocookie")["/xyz"]
    assert sent["regs"] == {"gdpr": 1} and sent["user"] == {"consent": "AAAA"}
    gpc = client.get("/ad?pub=examplenews&slot=gpc", headers={"Sec-GPC": "1"})
    assert "set-cookie" in gpc.headers  # keeping its own cookie is not a sale
    ipv6 = client.get(
        "/ad?pub=examplenews&slot=ipv6",
        headers={"Sec-GPC": "1", "X-Forwarded-For": "2001:db8:aa:bb::7"},
    )
    assert ipv6.status_code == 200
    assert servers.bid_requests("ipv6")["/xyz"]["device"]["ip"] == "2001:db8:aa::"


def test_no_pixel_match_for_a_buyer_refused_sync(client: httpx.Client) -> None:
    cookie = new_cookie(client)
    refused = client.get(
        f"/ad?pub=examplenews&slot=pm&gdpr=1&gdpr_consent={NOT_PUSHER}", headers={"Cookie": cookie}
    )
    assert PIXEL_MATCH.search(refused.text) is None
    allowed = client.get(f"/ad?pub=examplenews&slot=pm&{CONSENT}", headers={"Cookie": cookie})
    found = PIXEL_MATCH.search(allowed.text)
    assert found is not None and found.group(1).startswith("http://push.example/push?")


# -- /metrics -----------------------------------------------------------------------------


def test_the_reasons_are_at_metrics(client: httpx.Client) -> None:
    cookie = new_cookie(client)
    for query in ("gdpr=1", f"gdpr=1&gdpr_consent={ONLY_PUSHER}", "us_privacy=1YYN", CONSENT):
        client.get(
            f"/pixel?google_nid=ad_network_xyz&google_cm&{query}", headers={"Cookie": cookie}
        )
    client.get(
        "/pixel?google_nid=ad_network_xyz&google_cm", headers={"Cookie": cookie, "Sec-GPC": "1"}
    )
    text = client.get("/metrics").text
    for operation, reason in [
        ("store_id", "no_consent_string"),
        ("sync", "vendor_not_allowed"),
        ("sync", "us_opt_out"),
        ("sync", "gpc"),
        ("sync", "consented"),
        ("store_id", "not_regulated"),
    ]:
        line = f'cookiematch_privacy_decisions_total{{operation="{operation}",reason="{reason}"}}'
        assert line in text, line
    assert (
        'cookiematch_pixel_outcomes_total{nid="ad_network_xyz",outcome="error_1_privacy"}' in text
    )
