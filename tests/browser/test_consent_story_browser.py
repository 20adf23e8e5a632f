"""The reference document's first scenario under GDPR, in headless chromium, with the IAB's own
CMP API on the publisher's page.

ExampleNews (news.localhost) runs ``@iabtcf/stub`` and ``@iabtcf/cmpapi``; once its CMP
answers, the page adds the exchange's ad iframe with ``gdpr=1`` and ``gdpr_consent`` (as an ad
server's tag passes them on). The exchange and both buyers are real ``cookiematch serve``
processes (``demo_stack``; GVL vendor IDs: the exchange 900, the buyers 901 and 902). With
consent for them the story runs as without GDPR: the exchange's cookie, FinestDSP's match tag
in its ad, the match through the exchange, FinestDSP's cookie and match table. Without consent
(nothing, no vendor, or no purpose 1) no role sets a cookie, no bid request carries an ID, no
match tag is placed and no match is stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cookiematch.demo.stack import (
    ADMIN_TOKEN,
    EXCHANGE_VENDOR_ID,
    FINEST,
    MONSTER,
    PUBLISHER,
    VENDOR_IDS,
    Urls,
    demo_stack,
)

from support.browser import headless_chromium
from support.cmp_page import CMP_HEAD, ENCODE_TC
from support.dmp_sites import Stub, page, reference_files

pytestmark = pytest.mark.browser

NEWS_PAGE = (
    """<!doctype html><meta charset=utf-8><title>ExampleNews</title><body>
<h1>ExampleNews</h1>
"""
    + CMP_HEAD
    + """<script type="module">
const plan = __PLAN__;
"""
    + ENCODE_TC
    + """new CmpApi(300, 1, true).update(encoded);
// the publisher's ad tag: asks the CMP, then calls the exchange with the signals
__tcfapi("addEventListener", 2, (data, ok) => {
  if (!ok || !["tcloaded", "useractioncomplete"].includes(data.eventStatus)) return;
  __tcfapi("removeEventListener", 2, () => {}, data.listenerId);
  const frame = document.createElement("iframe");
  frame.width = 300; frame.height = 250; frame.title = "advertisement";
  frame.src = `${plan.ad}&gdpr=${data.gdprApplies ? 1 : 0}&gdpr_consent=${data.tcString}`;
  document.body.appendChild(frame);
});
</script>
"""
)

ROLES = ("exchange.localhost", "finest.localhost", "monster.localhost")
EVERY_VENDOR = sorted({EXCHANGE_VENDOR_ID, *VENDOR_IDS.values()})


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Urls]:
    with demo_stack(tmp_path) as (_, urls):
        yield urls


def news_site(urls: Urls, *, purposes: list[int], vendors: list[int]) -> Stub:
    plan = {
        "ad": f"{urls.exchange}/ad?pub={PUBLISHER}&slot=top",
        "gvl": EVERY_VENDOR,
        "purposes": purposes,
        "vendors": vendors,
    }
    html = NEWS_PAGE.replace("__PLAN__", json.dumps(plan))
    return Stub({"/node_modules/": reference_files, "/news": page(html)})


def admin(url: str) -> Any:
    scheme_host, _, path = url.partition("//")[2].partition("/")
    local = f"http://127.0.0.1:{scheme_host.split(':')[1]}/{path}"
    response = httpx.get(local, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
    return response


def visit(browser: Any, site: Stub) -> None:
    tab = browser.new_page()
    tab.goto(f"http://news.localhost:{site.port}/news")
    ad = 'iframe[title="advertisement"]'  # the stub's __tcfapiLocator frame is the other
    tab.wait_for_selector(ad, state="attached", timeout=15_000)
    tab.frame_locator(ad).locator("body").wait_for(timeout=15_000)
    tab.wait_for_load_state("networkidle")


def last_bid(buyer_url: str) -> dict[str, Any]:
    response = admin(f"{buyer_url}/admin/v1/bids/recent")
    assert response.status_code == 200, response.text
    bids: list[dict[str, Any]] = response.json()["bids"]
    assert bids, "the buyer got no bid request"
    return bids[-1]


def role_cookies(browser: Any) -> dict[tuple[str, str], str]:
    return {(c["domain"], c["name"]): c["value"] for c in browser.cookies() if c["domain"] in ROLES}


def test_with_consent_the_story_runs_as_without_gdpr(stack: Urls) -> None:
    site = news_site(stack, purposes=[1, 2, 3, 4], vendors=EVERY_VENDOR)
    try:
        with headless_chromium() as browser:
            visit(browser, site)
            bid = last_bid(stack.finest)
            assert bid["privacy_reason"] == "consented"
            assert bid["matched"] is False and bid["match_tag"] is True
            cookies = role_cookies(browser)
            assert ("exchange.localhost", "cm_id") in cookies
            finest_uid = cookies[("finest.localhost", "buyer_uid")]
            entry = admin(f"{stack.finest}/admin/v1/uids/{finest_uid}")
            assert entry.status_code == 200 and entry.json()["buyer_uid"] == finest_uid
            # the return visit: the bid request carries the gid, FinestDSP knows the user
            visit(browser, site)
            assert last_bid(stack.finest)["matched"] is True
    finally:
        site.close()


@pytest.mark.parametrize(
    ("purposes", "vendors"),
    [([], []), ([1, 2, 3, 4], []), ([2, 3, 4], EVERY_VENDOR)],
    ids=["nothing", "no-vendor", "no-purpose-1"],
)
def test_without_consent_no_role_sets_a_cookie_and_nothing_is_matched(
    stack: Urls, purposes: list[int], vendors: list[int]
) -> None:
    site = news_site(stack, purposes=purposes, vendors=vendors)
    try:
        with headless_chromium() as browser:
            for _ in range(2):  # a return visit finds nothing either
                visit(browser, site)
                for buyer in (stack.finest, stack.monster):
                    bid = last_bid(buyer)  # the auction ran: no ID, no match tag
                    assert bid["matched"] is False and bid["match_tag"] is False
            assert role_cookies(browser) == {}
            for buyer, nid in ((stack.finest, FINEST), (stack.monster, MONSTER)):
                counters = admin(f"{buyer}/admin/v1/stats").json()["counters"]
                # no match tag, no pixel match: no redirect through the exchange reached it
                assert not counters.get("match") and not counters.get("push"), (nid, counters)
    finally:
        site.close()
