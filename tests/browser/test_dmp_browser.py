"""Headless chromium: a client page on shop.localhost loads the DMP container tag from
dmp.localhost; the DMP hands out sync pixels for two partner stubs (analytics.localhost and
email.localhost) which set their own cookie and redirect to the DMP callback with their ID.
The DMP's admin API must then show both partner IDs for the DMP ID the browser holds.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cookiematch.dmp.model import IdFormat, Partner
from cookiematch.dmp.partner_ids import seal
from cookiematch.protocol.templates import SyncTemplate

from conftest import ServerProcess, free_port
from support.browser import headless_chromium
from support.configs import serve_argv
from support.dmp_sites import Stub, page, partner_stub

pytestmark = pytest.mark.browser

TOKEN = "browser-test-admin-token-0123"
EMAIL_KEY = b"e" * 32


def shop_stub(dmp_port: int) -> Stub:
    html = (
        "<!doctype html><meta charset=utf-8><title>Shop</title><h1>Shop</h1>"
        f'<script async src="http://dmp.localhost:{dmp_port}/tag.js?client=shop&gdpr=0">'
        "</script>"
    )
    return Stub({"/": page(html)})


def write_config(directory: Path, dmp_port: int, shop: int, analytics: int, email: int) -> Path:
    key = base64.b64encode(EMAIL_KEY).decode()
    text = f"""
[store]
url = "sqlite:///{directory / "dmp.db"}"

[dmp]
listen = "127.0.0.1:{dmp_port}"
public_url = "http://dmp.localhost:{dmp_port}"
admin_token = "{TOKEN}"
# the funnel below must count each callback as stored: a browser request's store call gets
# 5 s, not 50 ms (on a loaded machine SQLite misses 50 ms now and then, and a callback over
# its deadline is counted callback_failed)
store_deadline_ms = 5000

[[dmp.clients]]
id = "shop"
allowed_origins = ["http://shop.localhost:{shop}"]

[[dmp.clients.tags]]
id = "capped"
url = "http://analytics.localhost:{analytics}/other-tag.gif"
cap = 2

[[dmp.partners]]
id = "analytics"
sync_url = "http://analytics.localhost:{analytics}/sync?macro=$UID&redir=${{CALLBACK_URL}}"
priority = 2

[[dmp.partners]]
id = "email"
sync_url = "http://email.localhost:{email}/sync?macro=%5BEID%5D&dmp=${{DMP_UID}}&redir=${{CALLBACK_URL}}"
uid_macro = "[EID]"
id_format = "signed"
id_key = "{key}"
priority = 1
"""
    path = directory / "dmp.toml"
    path.write_text(text)
    return path


@pytest.fixture
def stubs() -> Iterator[dict[str, Any]]:
    issued: dict[str, str] = {}
    email_partner = Partner(
        "email", SyncTemplate.compile("http://e.example/${DMP_UID}"),
        id_format=IdFormat.SIGNED, id_key=EMAIL_KEY,
    )  # fmt: skip
    analytics = partner_stub("analytics", issued, lambda uid: uid)
    email = partner_stub("email", issued, lambda uid: seal(email_partner, uid, time.time()))
    yield {"issued": issued, "analytics": analytics, "email": email}
    analytics.close()
    email.close()


def admin_profile(base: str, uid: str) -> dict[str, Any] | None:
    response = httpx.get(
        f"{base}/admin/v1/profiles/{uid}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    return response.json() if response.status_code == 200 else None


def test_tag_sync_callback_across_hostnames(
    tmp_path: Path, stubs: dict[str, Any], start_server: Callable[..., ServerProcess]
) -> None:
    dmp_port = free_port()
    shop = shop_stub(dmp_port)
    analytics, email = stubs["analytics"], stubs["email"]
    config = write_config(tmp_path, dmp_port, shop.port, analytics.port, email.port)
    argv = serve_argv(config, "dmp")
    dmp = start_server(argv, port=dmp_port)
    page_url = f"http://shop.localhost:{shop.port}/"
    try:
        with headless_chromium() as context:
            page = context.new_page()
            page.goto(page_url)
            page.wait_for_function("window.cmdmp && window.cmdmp.synced === true", timeout=10_000)
            assert len(page.evaluate("window.cmdmp.pixels")) == 2

            cookies = context.cookies(f"http://dmp.localhost:{dmp_port}")
            dmp_cookie = next(c for c in cookies if c["name"] == "dmp_id")
            assert dmp_cookie["httpOnly"] and dmp_cookie["secure"]
            assert dmp_cookie["sameSite"] == "None"
            uid = dmp_cookie["value"]

            deadline = time.monotonic() + 10
            found = admin_profile(dmp.url, uid)
            while (found is None or len(found["partners"]) < 2) and time.monotonic() < deadline:
                time.sleep(0.1)
                found = admin_profile(dmp.url, uid)
            assert found is not None, dmp.output()
            assert found["dmp_uid"] == uid
            assert found["partners"] == stubs["issued"]
            assert set(found["partners"]) == {"analytics", "email"}

            # Two more page views: both partners are fresh, so no new sync; the capped tag
            # fires on two of the three views.
            for _ in range(2):
                page.goto(page_url)
                page.wait_for_function("window.cmdmp && window.cmdmp.synced === true")
                assert page.evaluate("window.cmdmp.pixels") == []
            page.wait_for_timeout(300)
    finally:
        shop.close()
    assert analytics.hits["/sync"] == 1 and email.hits["/sync"] == 1
    assert analytics.hits["/other-tag.gif"] == 2
    funnel = httpx.get(
        f"{dmp.url}/admin/v1/funnel", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert funnel["clients"]["shop"]["counts"]["tags_loaded"] == 3
    assert funnel["partners"]["email"]["counts"] == {
        "pixels": 1, "callbacks": 1, "callback_failed": 0, "rejected": 0, "inband": 0,
        "initiated": 0, "initiated_stored": 0, "cookie_refused": 0,
    }  # fmt: skip


def test_without_third_party_cookies_callbacks_are_lost_and_counted(
    tmp_path: Path, stubs: dict[str, Any], start_server: Callable[..., ServerProcess]
) -> None:
    """Chromium's default blocks third-party cookies: the DMP cookie never sticks, so the
    callbacks come back without it; nothing is stored and the funnel shows the loss."""
    dmp_port = free_port()
    shop = shop_stub(dmp_port)
    analytics, email = stubs["analytics"], stubs["email"]
    config = write_config(tmp_path, dmp_port, shop.port, analytics.port, email.port)
    argv = serve_argv(config, "dmp")
    dmp = start_server(argv, port=dmp_port)
    try:
        with headless_chromium(third_party_cookies=False) as context:
            page = context.new_page()
            page.goto(f"http://shop.localhost:{shop.port}/")
            page.wait_for_function("window.cmdmp && window.cmdmp.synced === true")
            assert len(page.evaluate("window.cmdmp.pixels")) == 2
            assert [c for c in context.cookies() if c["name"] == "dmp_id"] == []
            deadline = time.monotonic() + 10
            while analytics.hits["/sync"] + email.hits["/sync"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            page.wait_for_timeout(500)
    finally:
        shop.close()
    funnel = httpx.get(
        f"{dmp.url}/admin/v1/funnel", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    for partner in ("analytics", "email"):
        row = funnel["partners"][partner]
        assert row["counts"]["callbacks"] == 0 and row["loss_rate"] == 1.0
    assert funnel["other"]["rejected_no_cookie"] == 2
