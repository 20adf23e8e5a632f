"""Headless chromium: a publisher page with a consent management platform, and the DMP's
container tag asking it.

The page (news.localhost) runs the IAB's own CMP API: ``@iabtcf/stub`` first, then
``@iabtcf/cmpapi`` answering ``__tcfapi`` with a TC string that ``@iabtcf/core`` encodes in the
page (purposes and vendors as each test says), or ``@iabgpp/cmpapi`` answering ``__gpp`` with a
GPP string it encodes; all served from ``tests/reference/node_modules`` as ES modules. The
container tag (dmp.localhost) passes the CMP's answer to ``/sync``; the DMP's policy decides the
DMP cookie, the partner syncs (analytics.localhost, email.localhost), which of the client's other
tags fire and whether the tag may use ``localStorage``. On two pages the exchange's match tag
(exchange.localhost, its ``gdpr`` and ``gdpr_consent`` filled with the CMP's string) runs too:
its cookie and the buyer's gid follow the same consent.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conftest import ServerProcess, free_port
from support.browser import headless_chromium
from support.cmp_page import CMP_HEAD, ENCODE_TC
from support.configs import serve_argv, write_exchange_config
from support.dmp_sites import NODE_MODULES, Stub, page, partner_stub, pixel, reference_files

pytestmark = pytest.mark.browser

TOKEN = "cmp-browser-admin-token-0123"
ANALYTICS, EMAIL = 7, 8  # the partners' GVL vendor IDs; the other tags: analytics's, and none
TAGS = ("vendor_tag", "own_tag")

TCF_PAGE = (
    """<!doctype html><meta charset=utf-8><title>News</title><body><h1>News</h1>
"""
    + CMP_HEAD
    + """<script>if (__STUB_SAYS_GDPR__) __tcfapi("setGdprApplies", 2, function () {}, true);
</script>
<script type="module">
const plan = __PLAN__;
"""
    + ENCODE_TC
    + """window.tcString = encoded;
if (plan.match_tag) {  // the exchange's match tag, its macros filled as an ad server would
  const img = new Image(1, 1);
  img.src = `${plan.match_tag}&gdpr=1&gdpr_consent=${encoded}`;
  document.body.appendChild(img);
}
const cmp = new CmpApi(300, 1, true);
if (plan.gdpr_applies === false) cmp.update(null);
else if (plan.answer_after_ms === null) cmp.update(encoded);
else {
  cmp.update("", true);  // the consent dialog is shown: gdprApplies, no answer yet
  if (plan.answer_after_ms >= 0) setTimeout(() => cmp.update(encoded), plan.answer_after_ms);
}
</script>
<script async src="__TAG__"></script>
"""
)

GPP_PAGE = """<!doctype html><meta charset=utf-8><title>News</title><body><h1>News</h1>
<script type="importmap">{"imports": {
  "@iabgpp/cmpapi": "/node_modules/@iabgpp/cmpapi/lib/mjs/index.js"}}</script>
<script type="module">
import { CmpApi } from "@iabgpp/cmpapi";
const cmp = new CmpApi(300, 1);
cmp.setFieldValue("usnat", "SaleOptOutNotice", 1);
cmp.setFieldValue("usnat", "SaleOptOut", 1);  // the visitor opted out of the sale
cmp.setApplicableSections([7]);
cmp.setSignalStatus("ready");
window.gppString = cmp.getGppString();
const tag = document.createElement("script");  // as a tag manager adds it, once the CMP runs
tag.async = true;
tag.src = "__TAG__";
document.head.appendChild(tag);
</script>
"""

PLAIN_PAGE = """<!doctype html><meta charset=utf-8><title>News</title><body><h1>News</h1>
<script async src="__TAG__"></script>
"""


def tcf_page(tag: str, *, stub_says_gdpr: bool = False, **plan: Any) -> str:
    full = {"gvl": [ANALYTICS, EMAIL], "purposes": [1, 2, 3, 4], "vendors": [ANALYTICS, EMAIL],
            "answer_after_ms": None,
            "gdpr_applies": True, "match_tag": None, **plan}  # fmt: skip
    html = TCF_PAGE.replace("__PLAN__", json.dumps(full)).replace("__TAG__", tag)
    return html.replace("__STUB_SAYS_GDPR__", json.dumps(stub_says_gdpr))


def write_config(directory: Path, port: int, news: int, analytics: int, email: int) -> Path:
    text = f"""
[store]
url = "sqlite:///{directory / "dmp.db"}"

[dmp]
listen = "127.0.0.1:{port}"
public_url = "http://dmp.localhost:{port}"
admin_token = "{TOKEN}"
# the tests read the DMP cookie /sync sets and the stored callbacks: a browser request's
# store calls get 5 s, not 50 ms (on a loaded machine SQLite misses 50 ms now and then)
store_deadline_ms = 5000

# news waits long: the CMP's ES modules load file by file here (about a second; a CMP in
# production is one bundle); quick waits 200 ms, less than they take
[[dmp.clients]]
id = "news"
allowed_origins = ["http://news.localhost:{news}"]
cmp_wait_ms = 10000

[[dmp.clients.tags]]
id = "vendor_tag"
url = "http://analytics.localhost:{analytics}/vendor-tag.gif"
gvl_vendor_id = {ANALYTICS}
cap = 5

[[dmp.clients.tags]]
id = "own_tag"
url = "http://news.localhost:{news}/own-tag.gif"

[[dmp.clients]]
id = "quick"
allowed_origins = ["http://news.localhost:{news}"]
cmp_wait_ms = 200

[[dmp.clients.tags]]
id = "vendor_tag"
url = "http://analytics.localhost:{analytics}/vendor-tag.gif"
gvl_vendor_id = {ANALYTICS}
cap = 5

[[dmp.clients.tags]]
id = "own_tag"
url = "http://news.localhost:{news}/own-tag.gif"

[[dmp.partners]]
id = "analytics"
sync_url = "http://analytics.localhost:{analytics}/sync?macro=$UID&redir=${{CALLBACK_URL}}"
gvl_vendor_id = {ANALYTICS}
priority = 2

[[dmp.partners]]
id = "email"
sync_url = "http://email.localhost:{email}/sync?macro=$UID&redir=${{CALLBACK_URL}}"
gvl_vendor_id = {EMAIL}
priority = 1
"""
    path = directory / "dmp.toml"
    path.write_text(text)
    return path


class World:
    """The DMP server, two partners and the publisher, for a whole module; ``reset`` between
    tests (each test opens a fresh browser profile)."""

    def __init__(
        self, dmp: ServerProcess, news: Stub, partners: dict[str, Stub], issued: dict[str, str]
    ) -> None:
        self.dmp, self.news, self.partners, self.issued = dmp, news, partners, issued
        self.tag = f"http://dmp.localhost:{dmp.port}/tag.js?client=news"

    def reset(self) -> None:
        self.issued.clear()
        for stub in (self.news, *self.partners.values()):
            stub.hits.clear()
            stub.requests.clear()

    def buyer_hits(self) -> list[dict[str, list[str]]]:
        """What the exchange's redirects told the buyer (its ``/cm`` on the news site)."""
        return [
            parse_qs(urlsplit(path).query, keep_blank_values=True)
            for path in self.news.requests
            if path.startswith("/cm?")
        ]

    def url(self, path: str) -> str:
        return f"http://news.localhost:{self.news.port}{path}"

    def partner_syncs(self) -> int:
        return sum(stub.hits["/sync"] for stub in self.partners.values())

    def fired(self) -> set[str]:
        """The client's other tags the browser requested."""
        found = set()
        if self.partners["analytics"].hits["/vendor-tag.gif"]:
            found.add("vendor_tag")
        if self.news.hits["/own-tag.gif"]:
            found.add("own_tag")
        return found

    def profile(self, uid: str) -> dict[str, Any] | None:
        response = httpx.get(
            f"{self.dmp.url}/admin/v1/profiles/{uid}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        return response.json() if response.status_code == 200 else None

    def metric(self, operation: str, reason: str) -> float:
        text = httpx.get(f"{self.dmp.url}/metrics").text
        line = f'cookiematch_privacy_decisions_total{{operation="{operation}",reason="{reason}"}} '
        found = [float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line)]
        return found[0] if found else 0.0


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, start_module_server: Callable[..., ServerProcess]
) -> Iterator[World]:
    if not (NODE_MODULES / "@iabtcf" / "cmpapi").is_dir():
        reason = "tests/reference/node_modules is missing (npm ci --prefix tests/reference)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    issued: dict[str, str] = {}
    partners = {name: partner_stub(name, issued, str) for name in ("analytics", "email")}
    port = free_port()
    news = Stub({"/node_modules/": reference_files, "/own-tag.gif": pixel, "/cm": pixel})
    directory = tmp_path_factory.mktemp("dmp-cmp")
    config = write_config(
        directory, port, news.port, partners["analytics"].port, partners["email"].port
    )
    dmp = start_module_server(serve_argv(config, "dmp"), port=port)
    # the exchange, its buyer (vendor EMAIL) answering on the news site's /cm
    exchange_port = free_port()
    buyers = (
        f'[[exchange.buyers]]\nnid = "finest_dsp"\ngvl_vendor_id = {EMAIL}\n'
        f'redirect_url = "http://buyer.localhost:{news.port}/cm?src=cm"\n'
    )
    exchange = write_exchange_config(directory, exchange_port, buyers=buyers, user_lists="")
    start_module_server(serve_argv(exchange, "exchange"), port=exchange_port)
    match_tag = (
        f"http://exchange.localhost:{exchange_port}/pixel?google_nid=finest_dsp&google_cm&google_sc"
    )
    found = World(dmp, news, partners, issued)
    tag = found.tag
    quick = tag.replace("client=news", "client=quick")
    news.routes.update(
        {
            "/consent": page(tcf_page(tag, match_tag=match_tag)),
            "/refuse": page(tcf_page(tag, purposes=[], vendors=[], match_tag=match_tag)),
            "/only-email": page(tcf_page(tag, vendors=[EMAIL])),
            "/answer-later": page(tcf_page(tag, answer_after_ms=150)),
            "/no-answer": page(tcf_page(quick, answer_after_ms=-1)),
            "/no-answer-in-the-eu": page(tcf_page(quick, answer_after_ms=-1, stub_says_gdpr=True)),
            "/not-applicable": page(tcf_page(tag, gdpr_applies=False)),
            "/explicit": page(tcf_page(f"{tag}&gdpr=0", purposes=[], vendors=[])),
            "/gpp-opt-out": page(GPP_PAGE.replace("__TAG__", tag)),
            "/plain": page(PLAIN_PAGE.replace("__TAG__", tag)),
        }
    )
    yield found
    for stub in (news, *partners.values()):
        stub.close()


@pytest.fixture
def browser(world: World) -> Iterator[Any]:
    world.reset()
    with headless_chromium() as context:
        yield context


def visit(world: World, context: Any, path: str) -> Any:
    """Open the page and wait until the container tag has its answer from the DMP."""
    tab = context.new_page()
    tab.goto(world.url(path))
    tab.wait_for_function("window.cmdmp && window.cmdmp.synced === true", timeout=20_000)
    return tab


def dmp_cookie(world: World, context: Any) -> str | None:
    cookies = context.cookies(f"http://dmp.localhost:{world.dmp.port}")
    return next((c["value"] for c in cookies if c["name"] == "dmp_id"), None)


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def assert_nothing_happens(world: World, context: Any, tab: Any) -> None:
    """No DMP cookie, no partner sync, no other tag, nothing in localStorage."""
    tab.wait_for_timeout(400)  # what the tag would fire, it fires right after the answer
    assert dmp_cookie(world, context) is None
    assert world.partner_syncs() == 0
    assert world.fired() == set()
    assert tab.evaluate("window.localStorage.length") == 0
    assert tab.evaluate("window.cmdmp.allowed") == {"storage": False, "tags": []}
    assert tab.evaluate("window.cmdmp.pixels") == []


def assert_synced(world: World, context: Any, tab: Any, partners: set[str]) -> str:
    """The DMP cookie is set, and each of ``partners`` synced (its callback stored)."""
    uid = dmp_cookie(world, context)
    assert uid is not None
    eventually(
        lambda: set((world.profile(uid) or {}).get("partners", {})) == partners,
        f"the callbacks of {partners}",
    )
    return uid


def test_with_consent_the_tag_cookies_syncs_and_fires_the_consented_tag(
    world: World, browser: Any
) -> None:
    tab = visit(world, browser, "/consent")
    tc_string = tab.evaluate("window.tcString")
    assert tab.evaluate("window.cmdmp.privacy") == {"gdpr": "1", "gdpr_consent": tc_string}
    uid = assert_synced(world, browser, tab, {"analytics", "email"})
    assert set(world.issued) == {"analytics", "email"}
    assert tab.evaluate("window.cmdmp.allowed") == {"storage": True, "tags": ["vendor_tag"]}
    eventually(lambda: world.fired() == {"vendor_tag"}, "the vendor's tag")
    # its frequency cap is kept in localStorage: storage is allowed
    assert tab.evaluate("Object.keys(window.localStorage)") == ["cmdmp_fc:news:vendor_tag"]
    consent = (world.profile(uid) or {})["consent"]
    assert set(consent["partners"]) == {"analytics", "email"}
    assert "refused" not in consent["dmp_cookie"]
    tab.wait_for_timeout(300)
    assert "own_tag" not in world.fired()  # no vendor ID: GDPR applies, it cannot be checked
    # the exchange's match tag on the same page: its cookie, and a gid for the buyer
    eventually(lambda: len(world.buyer_hits()) == 1, "the exchange's redirect to the buyer")
    assert "google_gid" in world.buyer_hits()[0], world.buyer_hits()
    assert [c["name"] for c in browser.cookies() if c["name"] == "cm_id"] == ["cm_id"]


def test_without_consent_nothing_is_stored_synced_or_fired(world: World, browser: Any) -> None:
    tab = visit(world, browser, "/refuse")
    assert tab.evaluate("window.cmdmp.privacy")["gdpr"] == "1"
    assert_nothing_happens(world, browser, tab)
    # the exchange's match tag on the same page: no exchange cookie, no gid for the buyer
    eventually(lambda: len(world.buyer_hits()) == 1, "the exchange's redirect to the buyer")
    hit = world.buyer_hits()[0]
    assert hit["google_error"] == ["1"] and "google_gid" not in hit
    assert [c for c in browser.cookies() if c["name"] == "cm_id"] == []


def test_a_vendor_without_consent_is_neither_synced_nor_fired(world: World, browser: Any) -> None:
    tab = visit(world, browser, "/only-email")
    assert_synced(world, browser, tab, {"email"})
    assert tab.evaluate("window.cmdmp.allowed") == {"storage": True, "tags": []}
    tab.wait_for_timeout(300)
    assert world.partners["analytics"].hits["/sync"] == 0 and world.fired() == set()
    assert tab.evaluate("window.localStorage.length") == 0


def test_the_tag_waits_for_the_visitors_answer(world: World, browser: Any) -> None:
    tab = visit(world, browser, "/answer-later")  # the dialog is answered after 150 ms
    assert tab.evaluate("window.cmdmp.privacy")["gdpr_consent"] == tab.evaluate("window.tcString")
    assert_synced(world, browser, tab, {"analytics", "email"})
    eventually(lambda: world.fired() == {"vendor_tag"}, "the vendor's tag")


def test_without_an_answer_in_time_the_tag_goes_on_with_what_it_has(
    world: World, browser: Any
) -> None:
    """The client ``quick`` waits 200 ms: the CMP's modules take longer to load. Without any
    signal the DMP judges by its ``gdpr_default`` (false here: not regulated)."""
    tab = visit(world, browser, "/no-answer")
    assert tab.evaluate("window.cmdmp.privacy") == {}
    assert_synced(world, browser, tab, {"analytics", "email"})


def test_without_an_answer_where_the_page_says_gdpr_applies_nothing_happens(
    world: World, browser: Any
) -> None:
    """The page told the IAB's stub that GDPR applies (``setGdprApplies``); its ``ping``
    says so before the CMP answers: GDPR applies and there is no consent."""
    tab = visit(world, browser, "/no-answer-in-the-eu")
    assert tab.evaluate("window.cmdmp.privacy") == {"gdpr": "1"}
    assert_nothing_happens(world, browser, tab)


def test_where_gdpr_does_not_apply_everything_runs(world: World, browser: Any) -> None:
    tab = visit(world, browser, "/not-applicable")
    assert tab.evaluate("window.cmdmp.privacy") == {"gdpr": "0"}
    assert_synced(world, browser, tab, {"analytics", "email"})
    eventually(lambda: world.fired() == set(TAGS), "both tags")


def test_signals_the_page_gives_win_over_the_cmp(world: World, browser: Any) -> None:
    tab = visit(world, browser, "/explicit")  # tag.js?client=news&gdpr=0, a CMP refusing all
    assert tab.evaluate("window.cmdmp.privacy") == {"gdpr": "0"}
    assert_synced(world, browser, tab, {"analytics", "email"})


def test_a_gpp_opt_out_of_sale_keeps_the_cookie_and_shares_nothing(
    world: World, browser: Any
) -> None:
    tab = visit(world, browser, "/gpp-opt-out")
    gpp = tab.evaluate("window.gppString")
    assert gpp.startswith("DBAB") and "~" in gpp
    assert tab.evaluate("window.cmdmp.privacy") == {"gpp": gpp, "gpp_sid": "7"}
    assert dmp_cookie(world, browser) is not None  # keeping its own cookie is not a sale
    assert tab.evaluate("window.cmdmp.allowed") == {"storage": True, "tags": []}
    tab.wait_for_timeout(400)
    assert world.partner_syncs() == 0 and world.fired() == set()


def test_sec_gpc_from_the_browser_refuses_syncs_and_tags(world: World, browser: Any) -> None:
    """Chromium has no switch for Global Privacy Control; the DevTools protocol adds the
    header to every request of the page (playwright's extra HTTP headers), the container tag's
    ``/sync`` included."""
    before = world.metric("sync", "gpc")
    browser.set_extra_http_headers({"Sec-GPC": "1"})
    tab = visit(world, browser, "/plain")
    assert tab.evaluate("window.cmdmp.privacy") == {}
    assert dmp_cookie(world, browser) is not None
    assert tab.evaluate("window.cmdmp.allowed") == {"storage": True, "tags": []}
    tab.wait_for_timeout(400)
    assert world.partner_syncs() == 0 and world.fired() == set()
    assert world.metric("sync", "gpc") >= before + 2  # both partners, for that reason
