"""The exchange's opt-out, erasure and notices to buyers through real ``cookiematch serve``
processes, real stores (SQLite; Redis) and real webhook receivers that verify each signature
with the buyer's secret (docs/privacy.md, "Opt-out and erasure: the exchange")."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from cookiematch.exchange import keys
from cookiematch.protocol.cookies import format_browser_id, parse_browser_id
from cookiematch.protocol.optout_notice import OptOutNotice
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage import open_store
from exchange.notice_receiver import NoticeReceiver, receiving, wait_for
from storage.redis_servers import RedisServer, require_redis

from conftest import ServerProcess, free_port
from support.configs import ADMIN_TOKEN, serve_argv, write_exchange_config

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CIPHER = UserIdCipher({1: b"1" * 32})  # support.configs' KEY_V1
XYZ_SECRET = "xyz-webhook-secret-0123456789"
MONSTER_SECRET = "monster-webhook-secret-0123456789"
PREFIXES = ("hm:", "ul:", "pm:", "br:")
RETRIES = "optout_notice_retry_first_seconds = 0.2\noptout_notice_retry_max_seconds = 1.0\n"
HOSTED = base64.urlsafe_b64encode(b"monster's own id").decode().rstrip("=")


def buyers(xyz_url: str, monster_url: str) -> str:
    return (
        '[[exchange.buyers]]\nnid = "ad_network_xyz"\n'
        'redirect_url = "http://ad.network.com/pixel?id="\n'
        f'optout_webhook_url = "{xyz_url}"\noptout_webhook_secret = "{XYZ_SECRET}"\n\n'
        '[[exchange.buyers]]\nnid = "cookie-monster"\n'
        'redirect_url = "http://cookie-monster.com/pixel?id="\nhosted_match = true\n'
        f'optout_webhook_url = "{monster_url}"\noptout_webhook_secret = "{MONSTER_SECRET}"\n\n'
        '[[exchange.buyers]]\nnid = "no-webhook"\nredirect_url = "http://quiet.example/cm"\n'
    )


@dataclass
class Browser:
    """A browser's cookies for one exchange, kept by hand (the cookies are ``Secure``)."""

    base: str
    cookies: dict[str, str] = field(default_factory=dict)

    def header(self) -> dict[str, str]:
        jar = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return {"Cookie": jar} if jar else {}

    def keep(self, response: httpx.Response) -> httpx.Response:
        for value in response.headers.get_list("set-cookie"):
            name, _, rest = value.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return response

    def get(self, path: str) -> httpx.Response:
        return self.keep(httpx.get(self.base + path, headers=self.header(), timeout=10))

    @property
    def browser_id(self) -> bytes:
        found = parse_browser_id(self.cookies.get("cm_id", ""))
        assert found is not None, self.cookies
        return found

    def matched(self) -> Browser:
        """A cookie, a gid for ad_network_xyz (its browser record), a user-list membership
        and hosted data; returns once the browser record is written (the monitor writes it
        in the background)."""
        first = self.get("/pixel?google_nid=ad_network_xyz&google_cm&google_sc")
        assert first.status_code == 302 and "cm_id" in self.cookies
        self.get(first.headers["location"])  # the only tag that gives a gid
        assert self.get("/pixel?google_nid=ad_network_xyz&google_ula=12345").is_redirect
        assert self.get(f"/pixel?google_nid=cookie-monster&google_hm={HOSTED}").is_redirect
        url = f"{self.base}/admin/v1/subjects/{format_browser_id(self.browser_id)}"

        def recorded() -> bool:
            records = httpx.get(url, headers=AUTH).json()["records"]
            return any(r["field"] == "created" for r in records)

        wait_for(recorded)
        return self

    def post_optout(self, action: str, *, from_page: bool = True) -> httpx.Response:
        """Press the page's button (``from_page``), or post the same form from another site:
        without the page's Strict cookie and with ``Sec-Fetch-Site: cross-site``."""
        page = self.get("/optout")
        token = re.search(r'name=csrf value="([^"]+)"', page.text)
        assert token is not None
        headers = self.header()
        if from_page:
            headers |= {"Sec-Fetch-Site": "same-origin", "Origin": self.base}
        else:
            jar = {k: v for k, v in self.cookies.items() if k != "cm_optout_csrf"}
            headers = {
                "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items()),
                "Sec-Fetch-Site": "cross-site",
                "Origin": "http://elsewhere.example",
            }
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = f"csrf={token[1]}&action={action}"
        return self.keep(httpx.post(self.base + "/optout", content=body, headers=headers))


def count_keys(store_url: str, browser_id: bytes) -> int:
    """The browser's plain keys and field maps, found by scanning every exchange prefix."""

    async def count() -> int:
        store = open_store(store_url)
        await store.start()
        try:
            tag, found = keys.browser_tag(browser_id), 0
            for prefix in PREFIXES:
                found += len([k async for k, _ in store.scan(prefix + tag)])
                found += len([k async for k, _ in store.scan_maps(prefix + tag)])
            return found
        finally:
            await store.close()

    return asyncio.run(count())


def notices_for(receiver: NoticeReceiver, nid: str, browser_id: bytes) -> list[OptOutNotice]:
    """The notices ``receiver`` verified that name ``browser_id`` (its gid for ``nid``)."""
    return [n for n in receiver.notices if CIPHER.decrypt(n.google_gids[0], nid, 1) == browser_id]


def metric(base: str, name: str, **labels: str) -> float:
    text = httpx.get(base + "/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def start_exchange(
    start: Callable[..., ServerProcess], directory: Path, xyz: str, monster: str, **kw: str
) -> tuple[ServerProcess, Path]:
    port = free_port()
    config = write_exchange_config(
        directory, port, buyers=buyers(xyz, monster), extra_exchange=RETRIES, **kw
    )
    return start(argv=serve_argv(config, "exchange"), port=port), config


@dataclass
class Setup:
    base: str
    config: Path
    store_url: str
    xyz: NoticeReceiver
    monster: NoticeReceiver


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
    start_module_server: Callable[..., ServerProcess],
) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("exchange-optout")
    with (
        receiving(NoticeReceiver(XYZ_SECRET.encode())) as xyz,
        receiving(NoticeReceiver(MONSTER_SECRET.encode())) as monster,
    ):
        server, config = start_exchange(start_module_server, directory, xyz.url, monster.url)
        yield Setup(server.url, config, f"sqlite:///{directory / 'exchange.db'}", xyz, monster)


def test_the_page_shows_what_is_stored_and_changes_nothing(setup: Setup) -> None:
    browser = Browser(setup.base).matched()
    before = dict(browser.cookies)
    page = browser.get("/optout?undo=1")  # the old undo link: only a page now
    assert page.status_code == 200
    assert "hosted_match" in page.text and "user_list" in page.text
    assert "browser_record" in page.text and "more days" in page.text
    assert 'value="optout"' in page.text
    assert browser.cookies["cm_id"] == before["cm_id"]  # only the page's token was set
    set_cookies = page.headers.get_list("set-cookie")
    assert len(set_cookies) == 1 and set_cookies[0].startswith("cm_optout_csrf=")
    assert count_keys(setup.store_url, browser.browser_id) == 3


def test_optout_erases_sets_the_cookie_and_notifies_every_buyer(setup: Setup) -> None:
    browser = Browser(setup.base).matched()
    browser_id = browser.browser_id
    assert count_keys(setup.store_url, browser_id) == 3
    answer = browser.post_optout("optout")
    assert answer.status_code == 200, answer.text
    assert "is opted out" in answer.text
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("cm_id="))
    assert cookie.startswith("cm_id=OPT_OUT;") and "SameSite=None" in cookie
    assert count_keys(setup.store_url, browser_id) == 0
    subject = format_browser_id(browser_id)
    shown = httpx.get(f"{setup.base}/admin/v1/subjects/{subject}", headers=AUTH).json()
    assert shown["records"] == []

    # the match tag now answers "opted out"
    tag = browser.get("/pixel?google_nid=ad_network_xyz&google_cm")
    assert tag.headers["location"].endswith("google_error=1")

    for receiver, nid in ((setup.xyz, "ad_network_xyz"), (setup.monster, "cookie-monster")):
        wait_for(lambda r=receiver, n=nid: len(notices_for(r, n, browser_id)) == 1)
        [notice] = notices_for(receiver, nid, browser_id)
        assert notice.nid == nid and notice.google_gids == [CIPHER.encrypt(browser_id, nid, 1)]
        assert receiver.refused == 0  # every signature verified with the buyer's own secret
    assert metric(setup.base, "cookiematch_optout_notices_total", nid="cookie-monster",
                  event="delivered") >= 1  # fmt: skip
    wait_for(lambda: metric(setup.base, "cookiematch_optout_notice_queue_depth",
                            nid="cookie-monster") == 0)  # fmt: skip

    # opted out: the page offers the undo; pressing it gives a fresh ID, nothing carried over
    assert 'value="undo"' in browser.get("/optout").text
    undone = browser.post_optout("undo")
    assert undone.status_code == 200
    fresh = browser.browser_id
    assert fresh != browser_id and count_keys(setup.store_url, fresh) == 0


def test_a_post_from_another_site_changes_nothing(setup: Setup) -> None:
    browser = Browser(setup.base).matched()
    for action in ("optout", "undo"):
        refused = browser.post_optout(action, from_page=False)
        assert refused.status_code == 403
        assert "set-cookie" not in refused.headers
    assert count_keys(setup.store_url, browser.browser_id) == 3
    # an opted-out browser cannot be opted back in from elsewhere either
    assert browser.post_optout("optout").status_code == 200
    assert browser.cookies["cm_id"] == "OPT_OUT"
    assert browser.post_optout("undo", from_page=False).status_code == 403
    assert browser.cookies["cm_id"] == "OPT_OUT"
    assert browser.get("/optout?undo=1").status_code == 200
    assert browser.cookies["cm_id"] == "OPT_OUT"


def test_admin_subject_access_and_erasure(setup: Setup) -> None:
    browser = Browser(setup.base).matched()
    subject = format_browser_id(browser.browser_id)
    url = f"{setup.base}/admin/v1/subjects/{subject}"
    assert httpx.get(url).status_code == 401
    assert httpx.delete(url).status_code == 401
    for bad in ("OPT_OUT", "short", subject + "x"):
        answer = httpx.get(f"{setup.base}/admin/v1/subjects/{bad}", headers=AUTH)
        assert answer.status_code == 400
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert (
            httpx.delete(f"{setup.base}/admin/v1/subjects/{bad}", headers=AUTH).status_code == 400
        )
    shown = httpx.get(url, headers=AUTH).json()
    kinds = {r["kind"] for r in shown["records"]}
    assert kinds == {"hosted_match", "user_list", "browser_record"}
    hosted = next(r for r in shown["records"] if r["kind"] == "hosted_match")
    assert hosted["value"] == "monster's own id" and hosted["expires_in_seconds"] > 89 * 86400
    erased = httpx.delete(url, headers=AUTH).json()
    assert erased["erased"] == {
        "hosted_match": 1, "user_list": 1, "pixel_match": 0, "browser_record": 1,
        "push_return": 0,
    }  # fmt: skip
    assert erased["notified"] == ["ad_network_xyz", "cookie-monster"]
    assert count_keys(setup.store_url, browser.browser_id) == 0


def test_cli_show_and_erase(setup: Setup) -> None:
    browser = Browser(setup.base).matched()
    subject = format_browser_id(browser.browser_id)

    def cli(command: str) -> dict[str, object]:
        argv = [sys.executable, "-m", "cookiematch", "subject", command,
                "--config", str(setup.config), "--role", "exchange", "--", subject]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        answer: dict[str, object] = json.loads(done.stdout)
        return answer

    shown = cli("show")
    assert shown["role"] == "exchange" and shown["subject"] == subject
    assert isinstance(shown["records"], list) and len(shown["records"]) == 4
    erased = cli("erase")
    assert erased["erased"] == {
        "hosted_match": 1, "user_list": 1, "pixel_match": 0, "browser_record": 1,
        "push_return": 0,
    }  # fmt: skip
    assert erased["notified"] == ["ad_network_xyz", "cookie-monster"]
    assert count_keys(setup.store_url, browser.browser_id) == 0
    assert cli("show")["records"] == []
    # the notices the CLI queued are delivered by the running server
    wait_for(lambda: len(notices_for(setup.xyz, "ad_network_xyz", browser.browser_id)) == 1)


def test_a_receiver_that_is_down_gets_its_notice_later(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    port = free_port()  # the buyer's webhook: nothing listens there yet
    with receiving(NoticeReceiver(XYZ_SECRET.encode())) as xyz:
        server, _ = start_exchange(start_server, tmp_path, xyz.url, f"http://127.0.0.1:{port}/o")
        browser = Browser(server.url).matched()
        browser_id = browser.browser_id
        assert browser.post_optout("optout").status_code == 200
        wait_for(lambda: metric(server.url, "cookiematch_optout_notices_total",
                                nid="cookie-monster", event="failed_attempt") >= 2)  # fmt: skip
        assert metric(server.url, "cookiematch_optout_notice_queue_depth",
                      nid="cookie-monster") == 1  # fmt: skip
        with receiving(NoticeReceiver(MONSTER_SECRET.encode()), port=port) as monster:
            wait_for(lambda: len(monster.notices) == 1)
            assert monster.notices[0].google_gids == [
                CIPHER.encrypt(browser_id, "cookie-monster", 1)
            ]
        wait_for(lambda: len(xyz.notices) == 1)


def test_a_notice_survives_kill_9_right_after_the_answer(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    ports = free_port(), free_port()  # both receivers down
    urls = [f"http://127.0.0.1:{p}/optout" for p in ports]
    server, config = start_exchange(start_server, tmp_path, *urls)
    browser = Browser(server.url).matched()
    browser_id = browser.browser_id
    assert browser.post_optout("optout").status_code == 200
    server.kill9()  # right after the answer: no shutdown hook runs
    restarted = start_server(argv=serve_argv(config, "exchange"), port=server.port)
    with (
        receiving(NoticeReceiver(XYZ_SECRET.encode()), port=ports[0]) as xyz,
        receiving(NoticeReceiver(MONSTER_SECRET.encode()), port=ports[1]) as monster,
    ):
        wait_for(lambda: len(xyz.notices) == 1 and len(monster.notices) == 1)
        assert xyz.notices[0].google_gids == [CIPHER.encrypt(browser_id, "ad_network_xyz", 1)]
        wait_for(lambda: metric(restarted.url, "cookiematch_optout_notice_queue_depth",
                                nid="ad_network_xyz") == 0)  # fmt: skip


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_redis()
    server = RedisServer(tmp_path_factory.mktemp("exchange-optout-redis"))
    yield server
    server.stop()


def test_on_redis_erasure_leaves_nothing_and_a_failed_store_changes_nothing(
    tmp_path: Path, start_server: Callable[..., ServerProcess], redis_server: RedisServer
) -> None:
    with redis_server.client() as client:
        client.flushall()
    with (
        receiving(NoticeReceiver(XYZ_SECRET.encode())) as xyz,
        receiving(NoticeReceiver(MONSTER_SECRET.encode())) as monster,
    ):
        port = free_port()
        config = write_exchange_config(
            tmp_path, port, buyers=buyers(xyz.url, monster.url), extra_exchange=RETRIES
        )
        text = config.read_text().replace(
            f'url = "sqlite:///{tmp_path / "exchange.db"}"', f'url = "{redis_server.url}"'
        )
        config.write_text(text)
        server = start_server(argv=serve_argv(config, "exchange"), port=port)
        browser = Browser(server.url).matched()
        other = Browser(server.url).matched()
        browser_id = browser.browser_id
        assert count_keys(redis_server.url, browser_id) == 3
        assert browser.post_optout("optout").status_code == 200
        assert count_keys(redis_server.url, browser_id) == 0
        assert count_keys(redis_server.url, other.browser_id) == 3
        wait_for(lambda: len(xyz.notices) == 1 and len(monster.notices) == 1)

        # the store goes away: the page says so, never a 500, and no opt-out cookie is set
        # (the browser keeps the ID a retry needs to find what is stored)
        redis_server.kill9()
        try:
            page = other.get("/optout")
            assert page.status_code == 503 and "cannot be read" in page.text
            failed = other.post_optout("optout")
            assert failed.status_code == 503 and "did not complete" in failed.text
            assert other.cookies["cm_id"] != "OPT_OUT"
        finally:
            redis_server.restart()
        # back once the store's breaker has seen it (its probe, every 0.5 s)
        wait_for(lambda: other.get("/optout").status_code == 200)
        retried = other.post_optout("optout")
        assert retried.status_code == 200 and other.cookies["cm_id"] == "OPT_OUT"
