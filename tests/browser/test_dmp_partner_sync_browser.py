"""Headless chromium: a partner-initiated sync across sites. A page on blog.localhost (a site
of the partners' customer, without the DMP's container tag) carries the partners' own tags
(analytics.localhost, plain IDs; email.localhost, signed IDs); each cookies the browser and
redirects it to the DMP's callback on dmp.localhost with its ID. The DMP, which has never seen
the browser, cookies it, redirects to its own callback to verify the cookie, and stores the
match; where third-party cookies are blocked it counts the refusal and stores nothing."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

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
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EMAIL_KEY = b"s" * 32
EMAIL = Partner("email", SyncTemplate.compile("http://e.example/${DMP_UID}"),
                id_format=IdFormat.SIGNED, id_key=EMAIL_KEY)  # fmt: skip
MACROS = {"analytics": "$UID", "email": "[EID]"}


def write_config(directory: Path, dmp_port: int, ports: dict[str, int]) -> Path:
    key = base64.b64encode(EMAIL_KEY).decode()
    text = f"""
[store]
url = "sqlite:///{directory / "dmp.db"}"

[dmp]
listen = "127.0.0.1:{dmp_port}"
public_url = "http://dmp.localhost:{dmp_port}"
admin_token = "{TOKEN}"
# the tests read the stored callbacks: a browser request's store calls get 5 s, not 50 ms
# (on a loaded machine SQLite misses 50 ms now and then)
store_deadline_ms = 5000

[[dmp.partners]]
id = "analytics"
sync_url = "http://analytics.localhost:{ports["analytics"]}/sync?redir=${{CALLBACK_URL}}"
initiates_sync = true

[[dmp.partners]]
id = "email"
sync_url = "http://email.localhost:{ports["email"]}/sync?redir=${{CALLBACK_URL}}"
uid_macro = "[EID]"
id_format = "signed"
id_key = "{key}"
initiates_sync = true
"""
    path = directory / "dmp.toml"
    path.write_text(text)
    return path


def blog_stub(dmp_port: int, ports: dict[str, int]) -> Stub:
    """The customer's pages, ``/<partner>``: that partner's own pixel, which sends the browser
    on to the DMP."""

    def html(name: str, port: int) -> str:
        callback = f"http://dmp.localhost:{dmp_port}/callback/{name}?uid={MACROS[name]}"
        pixel = (
            f"http://{name}.localhost:{port}/sync?macro={quote(MACROS[name])}"
            f"&redir={quote(callback)}"
        )
        return f'<!doctype html><meta charset=utf-8><title>Blog</title><img alt="" src="{pixel}">'

    return Stub({f"/{name}": page(html(name, port)) for name, port in ports.items()})


@pytest.fixture
def sites(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> Iterator[dict[str, Any]]:
    """The two partners, the DMP and the blog, each on its own port."""
    issued: dict[str, str] = {}
    partners = {
        "analytics": partner_stub("analytics", issued, lambda uid: uid),
        "email": partner_stub("email", issued, lambda uid: seal(EMAIL, uid, time.time())),
    }
    ports = {name: stub.port for name, stub in partners.items()}
    dmp_port = free_port()
    dmp = start_server(serve_argv(write_config(tmp_path, dmp_port, ports), "dmp"), port=dmp_port)
    blog = blog_stub(dmp_port, ports)
    yield {"issued": issued, "partners": partners, "dmp": dmp, "dmp_port": dmp_port,
           "blog": f"http://blog.localhost:{blog.port}"}  # fmt: skip
    for stub in (blog, *partners.values()):
        stub.close()


def partner_counts(dmp: ServerProcess) -> dict[str, dict[str, int]]:
    funnel = httpx.get(f"{dmp.url}/admin/v1/funnel", headers=AUTH).json()
    return {name: row["counts"] for name, row in funnel["partners"].items()}


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def matched(dmp: ServerProcess, partner: str, uid: str) -> str | None:
    response = httpx.get(f"{dmp.url}/admin/v1/profiles", headers=AUTH,
                         params={"partner": partner, "uid": uid})  # fmt: skip
    return response.json()["dmp_uid"] if response.status_code == 200 else None


def test_a_partner_redirect_cookies_the_browser_and_records_the_match(
    sites: dict[str, Any],
) -> None:
    dmp, issued = sites["dmp"], sites["issued"]
    with headless_chromium() as context:
        tab = context.new_page()
        tab.goto(f"{sites['blog']}/analytics")
        wait_for(lambda: partner_counts(dmp)["analytics"]["initiated_stored"] == 1, "the match")
        cookies = context.cookies(f"http://dmp.localhost:{sites['dmp_port']}")
        uid = next(c["value"] for c in cookies if c["name"] == "dmp_id")
        assert matched(dmp, "analytics", issued["analytics"]) == uid
        # the next partner's redirect finds the cookie: an ordinary callback, stored at once
        tab.goto(f"{sites['blog']}/email")
        wait_for(lambda: partner_counts(dmp)["email"]["callbacks"] == 1, "the second match")
    assert matched(dmp, "email", issued["email"]) == uid
    profile = httpx.get(f"{dmp.url}/admin/v1/profiles/{uid}", headers=AUTH).json()
    assert profile["partners"] == issued
    counts = partner_counts(dmp)
    assert counts["analytics"]["initiated"] == 1 and counts["email"]["initiated"] == 0
    assert all(row["cookie_refused"] == 0 for row in counts.values())


def test_with_third_party_cookies_blocked_the_refusal_is_counted_and_nothing_stored(
    sites: dict[str, Any],
) -> None:
    dmp, issued = sites["dmp"], sites["issued"]
    with headless_chromium(third_party_cookies=False) as context:
        tab = context.new_page()
        for partner in MACROS:
            tab.goto(f"{sites['blog']}/{partner}")
            wait_for(lambda p=partner: partner_counts(dmp)[p]["cookie_refused"] == 1, "a refusal")
        assert [c for c in context.cookies() if c["name"] == "dmp_id"] == []
    for partner in MACROS:
        assert matched(dmp, partner, issued[partner]) is None
        row = partner_counts(dmp)[partner]
        assert (row["initiated"], row["initiated_stored"], row["rejected"]) == (1, 0, 0), row
