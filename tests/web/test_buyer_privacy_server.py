"""The buyer under the privacy policy, as a real ``cookiematch serve --role buyer`` process:
opt-out erasure, the buyer's cookie under the forwarded privacy parameters, personalisation at
bid time, and the policy's reasons at ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from prometheus_client import REGISTRY, generate_latest

from cookiematch.config import load_config
from cookiematch.roots.buyer import BuyerServer
from protocol.tcf_builder import core, id_bits, vendor_bitfield

from conftest import ServerProcess, free_port
from support.configs import serve_argv

TOKEN = "buyer-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXCHANGE = "https://exchange.example/pixel"
HOST = 7  # the buyer's GVL vendor ID
FULL = core(purpose_consents=id_bits(range(1, 11), 24), vendor_consents=vendor_bitfield(10, [HOST]))
NO_VENDOR = core(
    purpose_consents=id_bits(range(1, 11), 24), vendor_consents=vendor_bitfield(10, [])
)


def write_config(directory: Path, port: int) -> Path:
    path = directory / "buyer.toml"
    path.write_text(f"""
[store]
url = "sqlite:///{directory / "buyer.db"}"

[privacy]
host_vendor_id = {HOST}

[buyer]
listen = "127.0.0.1:{port}"
nid = "dsp"
exchange_url = "{EXCHANGE}"
admin_token = "{TOKEN}"

[[buyer.campaigns]]
id = "retarget"
audience = "matched"
matched_bid_price = 4.0
adm = "<p>welcome back</p>${{MATCH_TAG}}"

[[buyer.campaigns]]
id = "prospect"
bid_price = 0.5
adm = "<p>hello</p>${{MATCH_TAG}}"
""")
    return path


@pytest.fixture(scope="module")
def buyer(
    start_module_server: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    port = free_port()
    config = write_config(tmp_path_factory.mktemp("privacy"), port)
    argv = serve_argv(config, "buyer")
    server = start_module_server(argv=argv, port=port)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def assert_pixel(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.content.startswith(b"GIF89a")


def cookie_of(response: httpx.Response) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith("buyer_uid="):
            return header.split(";")[0].split("=", 1)[1]
    return None


def entry(client: httpx.Client, gid: str) -> int:
    return client.get(f"/admin/v1/matches/{gid}", headers=AUTH).status_code


def counters(client: httpx.Client) -> dict[str, dict[str, int]]:
    result: dict[str, dict[str, int]] = client.get("/admin/v1/stats", headers=AUTH).json()[
        "counters"
    ]
    return result


def decisions(client: httpx.Client) -> dict[tuple[str, str], float]:
    """``cookiematch_privacy_decisions_total`` by (operation, reason)."""
    found = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("cookiematch_privacy_decisions_total{"):
            labels, value = line.removeprefix("cookiematch_privacy_decisions_total").split("} ")
            pairs = dict(part.split("=") for part in labels.strip("{").split(","))
            found[pairs["operation"].strip('"'), pairs["reason"].strip('"')] = float(value)
    return found


def test_opt_out_erases_the_browsers_entry_and_sets_no_cookie(buyer: httpx.Client) -> None:
    gid = "b3B0LW91dA"
    first = buyer.get(f"/match?google_gid={gid}&google_cver=1")
    uid = cookie_of(first)
    assert uid is not None and entry(buyer, gid) == 200
    cookie = {"Cookie": f"buyer_uid={uid}"}
    opted_out = buyer.get("/match?id=&google_error=1", headers=cookie)
    assert_pixel(opted_out)
    assert "set-cookie" not in opted_out.headers
    assert entry(buyer, gid) == 404
    assert buyer.get(f"/admin/v1/uids/{uid}", headers=AUTH).status_code == 404
    assert counters(buyer)["opt_out"]["erased"] >= 1
    # by the gid alone, without the cookie
    buyer.get("/match?google_gid=Ynktz2lk&google_cver=1", headers=cookie)
    assert entry(buyer, "Ynktz2lk") == 200
    buyer.get("/match?google_error=1&google_gid=Ynktz2lk")
    assert entry(buyer, "Ynktz2lk") == 404


@pytest.mark.parametrize(
    ("privacy", "reason"),
    [
        ("gdpr=1", "no_consent_string"),
        ("gdpr=1&gdpr_consent=AAAA", "undecodable"),
        (f"gdpr=1&gdpr_consent={NO_VENDOR}", "vendor_not_allowed"),
        ("gdpr=2", "no_consent_string"),  # malformed gdpr: GDPR applies, and no TC string
        ("gdpr=1&gdpr=0", "no_consent_string"),  # given twice: no consent
    ],
)
def test_refused_store_id_is_a_pixel_without_cookie_or_write(
    buyer: httpx.Client, privacy: str, reason: str
) -> None:
    gid = "cmVmdXNlZA"
    before = decisions(buyer).get(("store_id", reason), 0)
    response = buyer.get(f"/match?id=&{privacy}&google_gid={gid}&google_cver=1")
    assert_pixel(response)
    assert "set-cookie" not in response.headers
    assert entry(buyer, gid) == 404
    assert counters(buyer)["match"][f"refused_{reason}"] >= 1
    assert decisions(buyer)[("store_id", reason)] == before + 1
    push = buyer.get(f"/push?{privacy}&google_gid={gid}&google_cver=1&google_push=tok")
    assert push.status_code == 302 and "set-cookie" not in push.headers
    assert push.headers["location"] == f"{EXCHANGE}?google_nid=dsp&google_push=tok"


@pytest.mark.parametrize(
    ("privacy", "headers"),
    [
        (f"gdpr=1&gdpr_consent={FULL}", {}),
        ("gdpr=0", {}),
        ("us_privacy=1YYN", {}),  # keeping its own cookie is not a sale
        ("", {"Sec-GPC": "1"}),
    ],
)
def test_allowed_store_id_matches_as_today(
    buyer: httpx.Client, privacy: str, headers: dict[str, str]
) -> None:
    gid = "YWxsb3dlZA"
    response = buyer.get(f"/match?{privacy}&google_gid={gid}&google_cver=1", headers=headers)
    assert_pixel(response)
    assert cookie_of(response) is not None and entry(buyer, gid) == 200


def test_matchtag_under_the_policy(buyer: httpx.Client) -> None:
    refused = buyer.get("/matchtag?gdpr=1")
    assert refused.status_code == 204 and "set-cookie" not in refused.headers
    assert_pixel(buyer.get("/matchtag?format=redirect&gdpr=1"))
    allowed = buyer.get(f"/matchtag?gdpr=1&gdpr_consent={FULL}")
    assert allowed.status_code == 200 and cookie_of(allowed) is not None
    query = dict(parse_qsl(urlsplit(allowed.json()["url"]).query, keep_blank_values=True))
    assert query == {"google_nid": "dsp", "google_cm": "", "gdpr": "1", "gdpr_consent": FULL}


def bid(
    client: httpx.Client, user: dict[str, object], regs: dict[str, object] | None
) -> httpx.Response:
    body: dict[str, object] = {"id": "r", "tmax": 200, "imp": [{"id": "1", "banner": {"w": 300,
                               "h": 250}}], "user": user}  # fmt: skip
    if regs is not None:
        body["regs"] = regs
    return client.post("/bid", json=body)


def test_bid_looks_the_user_up_only_where_personalisation_is_allowed(buyer: httpx.Client) -> None:
    gid = "YmlkZGVy"
    assert_pixel(buyer.get(f"/match?gdpr=1&gdpr_consent={FULL}&google_gid={gid}&google_cver=1"))
    before = decisions(buyer)

    consented = bid(buyer, {"id": gid, "consent": FULL}, {"gdpr": 1}).json()
    assert consented["seatbid"][0]["bid"][0]["cid"] == "retarget"

    refused = bid(buyer, {"id": gid}, {"gdpr": 1}).json()["seatbid"][0]["bid"][0]
    assert refused["cid"] == "prospect" and refused["adm"] == "<p>hello</p>"
    assert refused["ext"] == {"matched": False, "match_tag": False, "privacy": "no_consent_string"}

    silent = bid(buyer, {"id": gid}, None).json()["seatbid"][0]["bid"][0]
    assert silent["cid"] == "retarget" and silent["ext"] == {"matched": True, "match_tag": False}

    unknown = bid(buyer, {"id": "bmV3", "consent": FULL}, {"gdpr": 1}).json()
    adm = unknown["seatbid"][0]["bid"][0]["adm"]
    assert f"google_nid=dsp&amp;google_cm&amp;gdpr=1&amp;gdpr_consent={FULL}" in adm

    recent = buyer.get("/admin/v1/bids/recent?limit=4", headers=AUTH).json()["bids"]
    assert [r["privacy_reason"] for r in recent] == [
        "consented", "no_consent_string", "not_regulated", "consented"
    ]  # fmt: skip
    assert not recent[1]["matched"]
    after = decisions(buyer)
    for key, added in {("personalise", "consented"): 2, ("personalise", "no_consent_string"): 1,
                       ("personalise", "not_regulated"): 1}.items():  # fmt: skip
        assert after[key] == before.get(key, 0) + added
    assert "cookiematch_buyer_opt_out_total" in buyer.get("/metrics").text


async def test_the_policys_decisions_are_the_process_s_across_server_restarts(
    tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path, free_port()))
    for _ in range(2):  # a second worker in the same process starts cleanly
        server = BuyerServer(config)
        await server.app.startup()
        try:
            assert b"cookiematch_privacy_decisions" in generate_latest(REGISTRY)
        finally:
            await server.app.shutdown()
