"""User lists that act, through real processes: a two-worker ``cookiematch serve --role
exchange``, the recording bidder of ``test_exchange_ad_server``, a real buyer process, and the
DMP's export command.

- pre-targeting: a buyer with ``require_user_lists`` is asked only for members, and told
  their memberships (``user.ext.user_lists``);
- the seed's ``google_ula=<id>,<timestamp>``: counted from the given time, bounded by now;
- list sizes and changes in the admin API and ``/metrics``;
- a buyer's API credential: its own lists and nothing else, on every worker, and as the DMP's
  export destination;
- the buyer's ``push_user_lists`` on the pixel-matching return leg.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from test_dmp_export_server import populate, run_cli, write_dmp_config

from cookiematch.exchange import keys
from cookiematch.protocol.cookies import parse_browser_id
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage import open_store

from conftest import ServerProcess, free_port
from support.configs import ADMIN_TOKEN, serve_argv, write_exchange_config

HERE = Path(__file__).resolve().parent
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CIPHER = UserIdCipher({1: b"1" * 32})  # support.configs' KEY_V1
PIXEL_MATCH = re.compile(r'<img id="cm-pixel-match" src="([^"]+)"')
DAY = 86400
PRESET_MEMBERS = 3  # browsers on list 12345 before the exchange starts


@dataclass
class Stack:
    exchange: str
    buyer: str
    bidder_log: Path
    directory: Path

    def bid_requests(self, browser_id: bytes, nid: str) -> list[dict[str, Any]]:
        """The bid requests the bidder received for this browser's gid of ``nid``."""
        gid = CIPHER.encrypt(browser_id, nid, 1)
        lines = self.bidder_log.read_text().splitlines() if self.bidder_log.exists() else []
        requests = [json.loads(line)["request"] for line in lines]
        return [r for r in requests if r["user"].get("id") == gid]


def preset_members(database: Path) -> None:
    async def write() -> None:
        store = open_store(f"sqlite:///{database}")
        for i in range(PRESET_MEMBERS):
            await store.hset(keys.user_lists_key(bytes([200 + i]) * 16), {"12345": b"1"}, ttl=DAY)
        await store.close()

    asyncio.run(write())


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    start_module_server: Callable[..., ServerProcess],
) -> Stack:
    directory = tmp_path_factory.mktemp("lists")
    exchange_port, bidder_port, buyer_port = free_port(), free_port(), free_port()
    exchange = f"http://127.0.0.1:{exchange_port}"
    bidder = f"http://127.0.0.1:{bidder_port}"
    buyer = f"http://127.0.0.1:{buyer_port}"
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
nid = "listed"
redirect_url = "{bidder}/match?id="
bidder_url = "{bidder}/fast"
require_user_lists = [777]

[[exchange.buyers]]
nid = "dsp"
redirect_url = "{buyer}/match"
push_url = "{buyer}/push"
pixel_matching = true
bidder_url = "{bidder}/fast"
require_user_lists = [888]

[[exchange.publishers]]
id = "examplenews"
"""
    lists = """
[[exchange.user_lists]]
id = 12345
owner = "ad_network_xyz"

[[exchange.user_lists]]
id = 777
owner = "listed"

[[exchange.user_lists]]
id = 888
owner = "dsp"
"""
    config = write_exchange_config(
        directory,
        exchange_port,
        buyers=buyers,
        user_lists=lists,
        extra_exchange="auction_timeout_ms = 500\nmax_user_lists_per_buyer = 3",
    )
    preset_members(directory / "exchange.db")
    start_module_server(argv=serve_argv(config, "exchange", "--workers", "2"), port=exchange_port)
    buyer_config = directory / "buyer.toml"
    buyer_config.write_text(f"""
[store]
url = "sqlite:///{directory / "buyer.db"}"

[buyer]
listen = "127.0.0.1:{buyer_port}"
nid = "dsp"
exchange_url = "{exchange}/pixel"
public_url = "{buyer}"
win_notice_key = "a-win-notice-key-0123456789"
push_user_lists = [888]
""")
    start_module_server(argv=serve_argv(buyer_config, "buyer"), port=buyer_port)
    return Stack(exchange, buyer, log, directory)


class Browser:
    """One browser's exchange cookie, sent by hand (the test runs over plain http)."""

    def __init__(self, exchange: str) -> None:
        self.client = httpx.Client(base_url=exchange, timeout=5)
        self.cookie = ""

    def get(self, url: str) -> httpx.Response:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        response = self.client.get(url, headers=headers)
        set_cookie = response.headers.get("set-cookie")
        if set_cookie and set_cookie.startswith("cm_id="):
            self.cookie = set_cookie.split(";", 1)[0]
        return response

    @property
    def browser_id(self) -> bytes:
        found = parse_browser_id(self.cookie.partition("=")[2])
        assert found is not None
        return found


def ula_statuses(response: httpx.Response) -> list[str]:
    assert response.status_code == 302, response.text
    query = parse_qsl(urlsplit(response.headers["location"]).query, keep_blank_values=True)
    return [value for name, value in query if name == "google_ula"]


def eventually(check: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def fresh_get(url: str, token: str) -> httpx.Response:
    """A request on its own connection (so that either worker may answer it)."""
    with httpx.Client(timeout=5) as client:
        return client.get(url, headers={"Authorization": f"Bearer {token}"})


def mint(stack: Stack, nid: str, *scopes: str) -> str:
    with httpx.Client(base_url=stack.exchange, timeout=5, headers=ADMIN) as admin:
        created = admin.post(f"/admin/v1/buyers/{nid}/credentials", json={"scopes": scopes})
    assert created.status_code == 201, created.text
    token: str = created.json()["token"]
    # every worker knows it once it refreshed: a dozen fresh connections in a row succeed
    url = f"{stack.exchange}/admin/v1/user_lists" if "user_lists" in scopes else (
        f"{stack.exchange}/admin/v1/buyers/{nid}/redirect_url")  # fmt: skip

    def known_everywhere() -> bool:
        return all(fresh_get(url, token).status_code == 200 for _ in range(12))

    eventually(known_everywhere, "the credential never reached every worker")
    return token


# -- pre-targeting and the seed's timestamps ---------------------------------------------------


def test_pre_targeting_asks_a_buyer_only_for_members_of_its_lists(stack: Stack) -> None:
    jane = Browser(stack.exchange)
    assert jane.get("/ad?pub=examplenews&slot=top").status_code == 200
    jane.get("/ad?pub=examplenews&slot=top")
    assert not stack.bid_requests(jane.browser_id, "listed")  # not a member: never asked
    [*_, plain] = stack.bid_requests(jane.browser_id, "ad_network_xyz")
    assert "user_lists" not in plain["user"]["ext"]

    assert ula_statuses(jane.get("/pixel?google_nid=listed&google_ula=777")) == ["777,0"]
    jane.get("/ad?pub=examplenews&slot=top")
    [asked] = stack.bid_requests(jane.browser_id, "listed")
    assert asked["user"]["ext"]["user_lists"] == [777]
    assert CIPHER.decrypt(asked["user"]["id"], "listed", 1) == jane.browser_id


def test_the_seeds_timestamp_counts_the_membership_from_then(stack: Stack) -> None:
    old = Browser(stack.exchange)
    old.get("/ad?pub=examplenews&slot=top")
    # the seed's example: "google_ula=12345,7654321", answered as a success...
    assert ula_statuses(old.get("/pixel?google_nid=listed&google_ula=777,7654321")) == ["777,0"]
    old.get("/ad?pub=examplenews&slot=top")
    assert not stack.bid_requests(old.browser_id, "listed")  # ...but it ended in 1970

    recent = Browser(stack.exchange)
    recent.get("/ad?pub=examplenews&slot=top")
    added_at = int(time.time()) - 29 * DAY  # a day of its 30 left
    later = int(time.time()) + 365 * DAY  # a time to come: now
    query = f"google_nid=listed&google_ula=777,{added_at}&google_ula=777,{later}"
    assert ula_statuses(recent.get(f"/pixel?{query}")) == ["777,0", "777,0"]
    recent.get("/ad?pub=examplenews&slot=top")
    assert len(stack.bid_requests(recent.browser_id, "listed")) == 1


# -- sizes and changes ---------------------------------------------------------------------


def test_list_sizes_and_changes_in_the_admin_api_and_metrics(stack: Stack) -> None:
    client = httpx.Client(base_url=stack.exchange, timeout=5, headers=ADMIN)

    def stats(list_id: int) -> dict[str, Any]:
        answer = client.get(f"/admin/v1/user_lists/{list_id}/stats")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    # a worker re-reads the last measurement every 30 s (exchange/table_sizes.py)
    eventually(lambda: stats(12345)["measured_at"] is not None, "sizes never measured", 45)
    first = stats(12345)
    assert first["members"] == PRESET_MEMBERS and first["window_days"] == 7
    gids = [CIPHER.encrypt(bytes([i]) * 16, "ad_network_xyz", 1) for i in range(1, 5)]
    body = {"nid": "ad_network_xyz", "gids": gids, "remove": gids[:1]}
    assert client.post("/admin/v1/user_lists/12345/members", json=body).status_code == 200
    eventually(
        lambda: (
            stats(12345)["added"] >= first["added"] + 4
            and stats(12345)["removed"] >= first["removed"] + 1
        ),
        "changes never counted",
    )
    metrics = client.get("/metrics").text
    assert f'cookiematch_user_list_members{{list="12345"}} {PRESET_MEMBERS}.0' in metrics
    assert 'cookiematch_user_list_changes_total{change="added",list="12345"}' in metrics
    assert client.get("/admin/v1/user_lists/4242/stats").status_code == 404


# -- buyers' credentials -------------------------------------------------------------------


def test_a_buyer_credential_manages_its_own_lists_and_nothing_else(stack: Stack) -> None:
    token = mint(stack, "listed", "user_lists")
    own = httpx.Client(
        base_url=stack.exchange, timeout=5, headers={"Authorization": f"Bearer {token}"}
    )
    lists = own.get("/admin/v1/user_lists").json()["user_lists"]
    assert [u["id"] for u in lists] == [777]
    created = own.put("/admin/v1/user_lists/7001", json={"membership_days": 3})
    assert created.status_code == 201 and created.json()["owner"] == "listed"
    for method, path, body in [
        ("DELETE", "/admin/v1/buyers/ad_network_xyz", None),
        ("DELETE", "/admin/v1/buyers/listed", None),
        ("PUT", "/admin/v1/buyers/intruder", {"redirect_url": "http://x.example/"}),
        ("GET", "/admin/v1/buyers", None),
        ("POST", "/admin/v1/user_lists/12345/members", {"nid": "ad_network_xyz"}),
        ("GET", "/admin/v1/buyers/listed/redirect_url", None),  # not its scope
    ]:
        answer = own.request(method, path, json=body)
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    # another buyer's lists are not there for it; their IDs are taken
    for method, path, body, status in [
        ("DELETE", "/admin/v1/user_lists/888", None, 404),
        ("GET", "/admin/v1/user_lists/888/stats", None, 404),
        ("PUT", "/admin/v1/user_lists/12345", {"owner": "listed"}, 409),
    ]:
        answer = own.request(method, path, json=body)
        assert answer.status_code == status, (method, path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    with httpx.Client(base_url=stack.exchange, timeout=5, headers=ADMIN) as admin:
        buyers = {b["nid"] for b in admin.get("/admin/v1/buyers").json()["buyers"]}
        assert buyers == {"ad_network_xyz", "listed", "dsp"}
        [listed] = admin.get("/admin/v1/buyers/listed/credentials").json()["credentials"]
        assert token not in json.dumps(listed)
        revoked = admin.delete(f"/admin/v1/buyers/listed/credentials/{listed['id']}")
        assert revoked.status_code == 204
        # the list reaches the other worker at its refresh: until then that one has no 7001
        eventually(
            lambda: admin.delete("/admin/v1/user_lists/7001").status_code == 204,
            "the list created by the buyer never reached the admin's worker",
        )

    def revoked_everywhere() -> bool:
        url = f"{stack.exchange}/admin/v1/user_lists"
        return all(fresh_get(url, token).status_code == 401 for _ in range(12))

    eventually(revoked_everywhere, "the revoked credential still works on a worker")


def test_list_ids_stay_their_owners_and_are_limited_per_buyer(stack: Stack) -> None:
    """``max_user_lists_per_buyer = 3``: dsp holds 888 from the file. A deleted list's ID
    is neither given to another buyer nor freed from its owner's allowance."""
    dsp = httpx.Client(
        base_url=stack.exchange, timeout=5, headers=bearer_header(mint(stack, "dsp", "user_lists"))
    )
    other = httpx.Client(
        base_url=stack.exchange,
        timeout=5,
        headers=bearer_header(mint(stack, "ad_network_xyz", "user_lists")),
    )
    for list_id in [8001, 8002]:
        assert dsp.put(f"/admin/v1/user_lists/{list_id}", json={}).status_code == 201

    def known_everywhere() -> bool:  # both workers count dsp's lists
        url = f"{stack.exchange}/admin/v1/user_lists"
        token = dsp.headers["authorization"].removeprefix("Bearer ")
        return all(
            {8001, 8002} <= {u["id"] for u in fresh_get(url, token).json()["user_lists"]}
            for _ in range(12)
        )

    eventually(known_everywhere, "the new lists never reached every worker")
    for _ in range(6):  # on any worker
        over = dsp.put("/admin/v1/user_lists/8003", json={})
        assert over.status_code == 409 and "max_user_lists_per_buyer" in over.json()["detail"]
    assert dsp.delete("/admin/v1/user_lists/8002").status_code == 204
    for client, body in [(other, {}), (httpx.Client(headers=ADMIN), {"owner": "ad_network_xyz"})]:
        taken = client.put(f"{stack.exchange}/admin/v1/user_lists/8002", json=body)
        assert taken.status_code == 409 and "never changes owner" in taken.json()["detail"]
    assert dsp.put("/admin/v1/user_lists/8003", json={}).status_code == 409
    assert dsp.put("/admin/v1/user_lists/8002", json={}).status_code == 201


def bearer_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_dmp_exports_to_the_exchange_list_with_a_buyer_credential(
    stack: Stack, tmp_path: Path
) -> None:
    token = mint(stack, "ad_network_xyz", "user_lists")
    browsers = {f"uid{i:03d}": bytes([100 + i]) * 16 for i in range(10)}
    populate(tmp_path, {u: CIPHER.encrypt(b, "ad_network_xyz", 1) for u, b in browsers.items()})
    destinations = "".join(
        f"""
[[dmp.destinations]]
id = "{name}"
kind = "exchange_user_list"
url = "{stack.exchange}"
token = "{token}"
user_list_id = {list_id}
nid = "{nid}"
partner = "dsp"
max_attempts = 1
"""
        for name, list_id, nid in [("own", 12345, "ad_network_xyz"), ("theirs", 777, "listed")]
    )
    config = write_dmp_config(tmp_path, destinations)
    run_cli("segments", "recompute", "--config", str(config))
    args = ["--config", str(config), "--segment", "dsp_synced", "--json"]
    report = json.loads(run_cli("export", *args, "--destination", "own"))
    assert (report["sent"], report["accepted"], report["failed"]) == (10, 10, 0)
    refused = json.loads(run_cli("export", *args, "--destination", "theirs"))
    assert (refused["sent"], refused["accepted"], refused["rejected"]) == (10, 0, 10)

    async def memberships() -> list[set[str]]:
        store = open_store(f"sqlite:///{stack.directory / 'exchange.db'}")
        try:
            return [set(await store.hgetall(keys.user_lists_key(b))) for b in browsers.values()]
        finally:
            await store.close()

    assert all(found == {"12345"} for found in asyncio.run(memberships()))
    with httpx.Client(base_url=stack.exchange, timeout=5) as client:
        bearer = {"Authorization": f"Bearer {token}"}
        assert client.delete("/admin/v1/buyers/listed", headers=bearer).status_code == 403
        assert client.get("/admin/v1/buyers/listed", headers=ADMIN).status_code == 200


# -- the buyer's google_ula on the pixel-matching return leg ------------------------------------


def test_the_buyer_adds_its_lists_on_the_push_return_leg(stack: Stack) -> None:
    jane = Browser(stack.exchange)
    jane.get("/ad?pub=examplenews&slot=top")
    page = jane.get("/ad?pub=examplenews&slot=top").text
    assert not stack.bid_requests(jane.browser_id, "dsp")  # not on its list 888 yet
    found = PIXEL_MATCH.search(page)
    assert found is not None, page
    push = html.unescape(found.group(1))
    assert push.startswith(f"{stack.buyer}/push?")
    with httpx.Client(timeout=5) as browser_at_buyer:
        back = browser_at_buyer.get(push)
    assert back.status_code == 302, back.text
    location = back.headers["location"]
    assert location.startswith(f"{stack.exchange}/pixel?")
    assert ("google_ula", "888") in parse_qsl(urlsplit(location).query)
    returned = jane.get(location.removeprefix(stack.exchange))
    assert returned.status_code == 200 and returned.headers["content-type"] == "image/gif"
    jane.get("/ad?pub=examplenews&slot=top")
    [asked] = stack.bid_requests(jane.browser_id, "dsp")
    assert asked["user"]["ext"]["user_lists"] == [888]
