"""The DMP's opt-out and erasure against real ``cookiematch serve --role dmp`` processes, on SQLite
and on Redis: the opt-out page (a genuine POST from the page, CSRF checked), what an opted-out
browser gets from every browser route, the removal the next export sends, the admin API's and
the CLI's access and erasure of one browser, and the page when the store is down."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cookiematch.cli.dmp_segments import export, segments
from cookiematch.cli.subject import subject
from cookiematch.protocol.cookies import OPT_OUT_VALUE
from cookiematch.protocol.pixel import TRANSPARENT_GIF
from cookiematch.storage import connect_store
from dmp.store_scan import mentions
from storage.redis_servers import RedisServer, require_redis

from conftest import ServerProcess, free_port
from support.configs import serve_argv

TOKEN = "dmp-optout-admin-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ORIGIN = "https://shop.example"


def write_config(directory: Path, port: int, store_url: str) -> Path:
    text = f"""
[store]
url = "{store_url}"

[dmp]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
admin_token = "{TOKEN}"
cookie_secure = false
recompute_interval_minutes = 0

[[dmp.clients]]
id = "shop"
allowed_origins = ["{ORIGIN}"]

[[dmp.partners]]
id = "dsp"
sync_url = "https://dsp.example/s?r=${{CALLBACK_URL}}"

[[dmp.segments]]
id = "dsp_synced"
rule = {{ synced = "dsp" }}

[[dmp.destinations]]
id = "dsp_file"
kind = "file"
path = "{directory / "exports" / "{destination}-{segment}-{time}.csv"}"
partner = "dsp"
"""
    path = directory / "dmp.toml"
    path.write_text(text)
    return path


@dataclass
class Dmp:
    server: ServerProcess
    config: Path
    store_url: str
    exports: Path

    def http(self) -> httpx.Client:
        """A client that keeps no cookies: each request says which browser it is."""
        client = httpx.Client(base_url=self.server.url, timeout=15)
        client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        return client

    def cli(self, command: Callable[..., object], *args: str) -> str:
        result = CliRunner().invoke(command, [*args], catch_exceptions=False)  # type: ignore[arg-type]
        assert result.exit_code == 0, result.output
        return result.output

    def export(self) -> list[str]:
        """Recompute, export the segment to the file destination, return the rows sent."""
        self.cli(segments, "recompute", "--config", str(self.config))
        args = ("--config", str(self.config), "--segment", "dsp_synced", "--destination")
        self.cli(export, *args, "dsp_file")
        rows: list[str] = []
        for path in sorted(self.exports.glob("*.csv")):
            rows += path.read_text().splitlines()[1:]
            path.unlink()
        return rows

    def mentions(self, *ids: str) -> list[str]:
        async def scan() -> list[str]:
            store = await connect_store(self.store_url)
            try:
                return await mentions(store, *ids)
            finally:
                await store.close()

        return asyncio.run(scan())


@pytest.fixture(scope="module")
def optout_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_redis()
    server = RedisServer(tmp_path_factory.mktemp("optout-redis"))
    yield server
    server.stop()


def start_dmp(directory: Path, store_url: str, start: Callable[..., ServerProcess]) -> Dmp:
    port = free_port()
    config = write_config(directory, port, store_url)
    server = start(serve_argv(config, "dmp"), port=port)
    return Dmp(server, config, store_url, directory / "exports")


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def dmp(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    start_module_server: Callable[..., ServerProcess],
) -> Dmp:
    directory = tmp_path_factory.mktemp(f"dmp-optout-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{directory / 'dmp.db'}"
    else:
        url = request.getfixturevalue("optout_redis").url
    return start_dmp(directory, url, start_module_server)


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Name -> value of every Set-Cookie."""
    found: dict[str, str] = {}
    for header in response.headers.get_list("set-cookie"):
        name, _, value = header.split(";")[0].partition("=")
        found[name] = value
    return found


def new_browser(http: httpx.Client, partner_uid: str) -> str:
    """A browser synced by the shop's tag, then called back by the dsp."""
    answer = http.get("/sync?client=shop", headers={"Origin": ORIGIN})
    uid = set_cookies(answer)["dmp_id"]
    callback = http.get(f"/callback/dsp?uid={partner_uid}", headers={"Cookie": f"dmp_id={uid}"})
    assert callback.status_code == 200 and callback.content == TRANSPARENT_GIF
    assert http.get("/imp?campaign=c1", headers={"Cookie": f"dmp_id={uid}"}).status_code == 200
    return uid


def page_token(page: httpx.Response) -> str:
    """The CSRF token of an opt-out page: its cookie, which the hidden field repeats."""
    token = set_cookies(page)["cm_optout_csrf"]
    assert f'name=csrf value="{token}"' in page.text
    return token


def submit(http: httpx.Client, cookie: str, action: str) -> httpx.Response:
    """What a browser sends when the page's button is pressed: the page fetched first."""
    page = http.get("/optout", headers={"Cookie": cookie})
    assert page.status_code == 200
    token = page_token(page)
    return http.post(
        "/optout",
        content=f"csrf={token}&action={action}",
        headers={
            "Cookie": f"{cookie}; cm_optout_csrf={token}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": http.base_url.scheme + "://" + http.base_url.netloc.decode(),
            "Sec-Fetch-Site": "same-origin",
        },
    )


def test_the_opt_out_page_erases_the_browser_and_the_next_export_removes_it(dmp: Dmp) -> None:
    with dmp.http() as http:
        uid = new_browser(http, "D-1")
        other = new_browser(http, "D-2")
        assert sorted(dmp.export()) == ["add,D-1", "add,D-2"]

        page = http.get("/optout", headers={"Cookie": f"dmp_id={uid}"})
        assert page.status_code == 200 and "This browser is not opted out" in page.text
        for kind in ("partner_id", "event", "segment", "export_sent"):
            assert f"<td>{kind}</td>" in page.text
        assert "390 more days" in page.text and "420 more days" in page.text
        assert set(set_cookies(page)) == {"cm_optout_csrf"}  # a GET changes nothing

        forged = http.post(
            "/optout",
            content="csrf=guess&action=optout",
            headers={"Cookie": f"dmp_id={uid}", "Sec-Fetch-Site": "cross-site"},
        )
        assert forged.status_code == 403 and "dmp_id" not in set_cookies(forged)
        assert dmp.mentions(uid)

        done = submit(http, f"dmp_id={uid}", "optout")
        assert done.status_code == 200 and "This browser is opted out" in done.text
        assert "records erased" in done.text and "1 notice to remove" in done.text
        assert set_cookies(done)["dmp_id"] == OPT_OUT_VALUE

    assert dmp.mentions(uid) == []
    assert dmp.mentions("D-1") == ["dmpx:{dsp_synced:dsp_file}:gone[D-1]"]
    assert dmp.export() == ["remove,D-1"]
    assert dmp.mentions(uid, "D-1") == []
    assert dmp.mentions(other, "D-2")  # the other browser is kept
    assert dmp.export() == []


def test_an_opted_out_browser_gets_no_cookie_no_sync_and_nothing_stored(dmp: Dmp) -> None:
    opted_out = {"Cookie": f"dmp_id={OPT_OUT_VALUE}"}
    with dmp.http() as http:
        sync = http.get("/sync?client=shop", headers={"Origin": ORIGIN, **opted_out})
        assert sync.status_code == 200
        assert sync.json() == {"pixels": [], "opted_out": True}
        assert sync.headers["access-control-allow-origin"] == ORIGIN
        for path in (
            "/callback/dsp?uid=D-OUT",
            "/inband/dsp?uid=D-OUT&kv=age:3",
            "/imp?campaign=CAMP-OUT",
        ):
            answer = http.get(path, headers=opted_out)
            assert answer.status_code == 400 and answer.content == TRANSPARENT_GIF, path
            assert "set-cookie" not in answer.headers, path
        audiences = http.get("/audiences", headers=opted_out)
        assert audiences.json() == {"kv": {}, "opted_out": True}
        assert "set-cookie" not in sync.headers and "set-cookie" not in audiences.headers
        tag = http.get("/tag.js?client=shop", headers=opted_out)
        assert tag.status_code == 200 and "set-cookie" not in tag.headers

        page = http.get("/optout", headers=opted_out)
        assert "This browser is opted out" in page.text and 'value="undo"' in page.text
        assert "Nothing is stored about this browser" in page.text
    assert dmp.mentions("D-OUT", "CAMP-OUT") == []  # no hex key part holds them


def test_undo_gives_the_browser_a_fresh_id(dmp: Dmp) -> None:
    with dmp.http() as http:
        answer = submit(http, f"dmp_id={OPT_OUT_VALUE}", "undo")
        assert answer.status_code == 200 and "This browser is not opted out" in answer.text
        fresh = set_cookies(answer)["dmp_id"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", fresh)
        sync = http.get(
            "/sync?client=shop", headers={"Origin": ORIGIN, "Cookie": f"dmp_id={fresh}"}
        )
        assert sync.json()["pixels"] and "opted_out" not in sync.json()


def test_the_admin_api_shows_and_erases_one_browser(dmp: Dmp) -> None:
    with dmp.http() as http:
        uid = new_browser(http, "D-ADMIN")
        assert dmp.export() == ["add,D-ADMIN"]
        path = f"/admin/v1/subjects/{uid}"

        refused = http.get(path)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        bad = http.delete("/admin/v1/subjects/not-a-dmp-uid", headers=AUTH)
        assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
        assert "DMP uid" in bad.json()["detail"]

        shown = http.get(path, headers=AUTH).json()
        assert shown["role"] == "dmp" and shown["subject"] == uid
        kinds = {r["kind"] for r in shown["records"]}
        assert {"partner_id", "partner_id_reverse", "segment", "export_sent"} <= kinds
        assert all(r["expires_in_seconds"] > 0 for r in shown["records"])
        by_partner = http.get("/admin/v1/subjects/partner:dsp:D-ADMIN", headers=AUTH).json()
        assert len(by_partner["records"]) == len(shown["records"])

        erased = http.delete(path, headers=AUTH).json()
        assert erased["erased"]["export_sent"] == 1 and erased["erased"]["partner_id"] == 1
        assert erased["notified"] == ["dsp_file (segment dsp_synced)"]
        assert http.get(path, headers=AUTH).json()["records"] == []
    assert dmp.export() == ["remove,D-ADMIN"]
    assert dmp.mentions(uid, "D-ADMIN") == []


def test_the_cli_shows_and_erases_one_browser(dmp: Dmp) -> None:
    with dmp.http() as http:
        uid = new_browser(http, "D-CLI")
    assert dmp.export() == ["add,D-CLI"]
    args = ("--config", str(dmp.config), "--role", "dmp", "--", uid)  # the uid may start with -
    shown = json.loads(dmp.cli(subject, "show", *args))
    assert {r["kind"] for r in shown["records"]} >= {"partner_id", "export_sent"}
    erased = json.loads(dmp.cli(subject, "erase", *args))
    assert erased["erased"]["segment"] == 1
    assert erased["notified"] == ["dsp_file (segment dsp_synced)"]
    assert dmp.export() == ["remove,D-CLI"]
    assert dmp.mentions(uid, "D-CLI") == []
    bad = CliRunner().invoke(subject, ["show", "--config", str(dmp.config), "--role", "dmp", "x"])
    assert bad.exit_code != 0 and "DMP uid" in bad.output


@pytest.fixture
def lone_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own (what it holds survives a restart), stopped after the
    servers that use it."""
    require_redis()
    server = RedisServer(tmp_path / "redis", ["--appendonly", "yes"])
    yield server
    server.stop()


def test_a_store_that_fails_answers_503_and_changes_nothing(
    tmp_path: Path, lone_redis: RedisServer, start_server: Callable[..., ServerProcess]
) -> None:
    dmp = start_dmp(tmp_path, lone_redis.url, start_server)
    with dmp.http() as http:
        uid = new_browser(http, "D-DOWN")
        token = page_token(http.get("/optout", headers={"Cookie": f"dmp_id={uid}"}))
        lone_redis.stop()
        down = http.get("/optout", headers={"Cookie": f"dmp_id={uid}"})
        assert down.status_code == 503 and "nothing was changed" in down.text
        post = http.post(
            "/optout",
            content=f"csrf={token}&action=optout",
            headers={"Cookie": f"dmp_id={uid}; cm_optout_csrf={token}"},
        )
        assert post.status_code == 503 and "nothing was changed" in post.text
        assert "dmp_id" not in set_cookies(post)
        lone_redis.start()  # back: the browser was not erased, and can opt out now
        back = time.monotonic()  # once the store's breaker has seen it back (its probe)
        while (page := http.get("/optout", headers={"Cookie": f"dmp_id={uid}"})).status_code != 200:
            assert time.monotonic() - back < 2.0, page.text
            time.sleep(0.05)
        assert "dmp_id" not in set_cookies(page)
        assert dmp.mentions(uid, "D-DOWN")
        assert submit(http, f"dmp_id={uid}", "optout").status_code == 200
    assert dmp.mentions(uid, "D-DOWN") == []
