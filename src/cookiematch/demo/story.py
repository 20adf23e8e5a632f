"""``cookiematch demo``: the whole story on one laptop, on the embedded store.

The exchange, a buyer with its own match table (FinestDSP), a buyer using hosted match data
(Cookie Monster) and the publisher site ExampleNews run on their own loopback ports and
``*.localhost`` names. Simulated browsers (a cookie jar per host, redirects followed, images and
iframes loaded) walk through the reference document's two scenarios, the protocol's corner
cases and a few hundred more visits; the demo prints each hop of the first browser, then match
rates and retargeted wins, and exits 0 only when everything matched as expected.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx

from cookiematch.demo.browser import Hop, SimulatedBrowser
from cookiematch.demo.dmp_data import run_dmp_stories
from cookiematch.demo.dmp_story import GidRelay, serving
from cookiematch.demo.publisher_site import serve_publisher
from cookiematch.demo.stack import ADMIN_TOKEN, FINEST, MONSTER, PUBLISHER, Urls, demo_stack

MORE_BROWSERS = 100
VISITS_EACH = 3
_AD_DIV = re.compile(r'<div id="cm-ad" data-nid="([^"]*)" data-crid="([^"]*)"')


@dataclass
class Expectations:
    """What must hold for the demo to exit 0; each failure is printed."""

    failures: list[str] = field(default_factory=list)

    def check(self, condition: bool, what: str) -> None:
        print(f"  [{'ok' if condition else 'FAILED'}] {what}")
        if not condition:
            self.failures.append(what)


def print_hop(hop: Hop) -> None:
    print(f"    GET {hop.url}")
    line = f"      -> {hop.status}"
    if hop.location:
        line += f"  Location: {hop.location}"
    print(line)
    for cookie in hop.set_cookies:
        print(f"         Set-Cookie: {cookie.split(';', 1)[0]}; …")


def winner(hops: list[Hop]) -> tuple[str, str] | None:
    """(buyer nid, creative id) of the ad the exchange served in these hops."""
    for hop in hops:
        if "/ad?" in hop.url:
            match = _AD_DIV.search(hop.body.decode("utf-8", "replace"))
            return (match.group(1), match.group(2)) if match else None
    return None


def gid_sent_to(hops: list[Hop], buyer_url: str) -> str | None:
    for hop in hops:
        if hop.url.startswith(buyer_url + "/match"):
            return dict(parse_qsl(urlsplit(hop.url).query)).get("google_gid")
    return None


class Admin:
    """The roles' admin APIs."""

    def __init__(self, urls: Urls) -> None:
        self.urls = urls
        self.http = httpx.Client(timeout=5, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    def get(self, url: str) -> httpx.Response:
        parts = urlsplit(url)
        local = url.replace(parts.netloc, f"127.0.0.1:{parts.port}", 1)
        return self.http.get(local)

    def finest_match(self, gid: str) -> dict[str, object] | None:
        response = self.get(f"{self.urls.finest}/admin/v1/matches/{gid}")
        return response.json() if response.status_code == 200 else None

    def finest_bids(self) -> list[dict[str, object]]:
        bids: list[dict[str, object]] = self.get(f"{self.urls.finest}/admin/v1/bids/recent").json()[
            "bids"
        ]
        return bids

    def exchange_stats(self) -> dict[str, dict[str, object]]:
        body = self.get(f"{self.urls.exchange}/admin/v1/stats").json()
        return {entry["nid"]: entry for entry in body.get("buyers", [])}

    def buyer_stats(self, url: str) -> dict[str, dict[str, int]]:
        counters: dict[str, dict[str, int]] = self.get(f"{url}/admin/v1/stats").json()["counters"]
        return counters


def scenario_one(
    jane: SimulatedBrowser, page: str, urls: Urls, admin: Admin, ok: Expectations
) -> str:
    print("\n== Scenario 1: Jane has cleared her cookies and opens ExampleNews")
    jane.on_hop = print_hop
    hops = jane.visit(page)
    jane.on_hop = None
    won = winner(hops)
    gid = gid_sent_to(hops, urls.finest)
    ok.check(won == (FINEST, "prospect-brand"), f"FinestDSP won with its prospecting bid ({won})")
    ok.check("cm_id" in jane.jar.get("exchange.localhost", {}), "the exchange set Jane's cookie")
    ok.check(gid is not None, "the match tag in the ad redirected to FinestDSP with a google_gid")
    entry = admin.finest_match(gid) if gid else None
    finest_cookie = jane.jar.get("finest.localhost", {}).get("buyer_uid")
    ok.check(
        entry is not None and entry.get("buyer_uid") == finest_cookie,
        "FinestDSP's match table holds gid → its own cookie for Jane",
    )
    return gid or ""


def scenario_two(
    jane: SimulatedBrowser, page: str, urls: Urls, admin: Admin, gid: str, ok: Expectations
) -> None:
    print("\n== Scenario 2: a week later Jane visits ExampleNews again")
    jane.on_hop = print_hop
    hops = jane.visit(page)
    jane.on_hop = None
    won = winner(hops)
    ok.check(won == (FINEST, "retarget-shoes"), f"FinestDSP looked Jane up and retargeted ({won})")
    ok.check(gid_sent_to(hops, urls.finest) is None, "no match tag: FinestDSP's entry is fresh")
    last_bid = admin.finest_bids()[-1]
    ok.check(
        last_bid.get("matched") is True,
        "the bid request carried Jane's google_gid and FinestDSP found her in its table",
    )
    pushes = [hop for hop in hops if "/push?" in hop.url]
    if pushes:
        print(f"  pixel matching placed {urlsplit(pushes[0].url).netloc}'s push URL on the ad")


def protocol_corners(urls: Urls, ok: Expectations) -> None:
    print("\n== The match tag's other operations")
    bob = SimulatedBrowser()
    stop = lambda url: not url.startswith(urls.exchange)  # noqa: E731
    base = f"{urls.exchange}/pixel?google_nid={FINEST}"
    hops = bob.follow(f"{base}&google_cm", stop=stop)
    ok.check("google_error=3" in (hops[-1].location or ""), "no cookie, no google_sc: error 3")
    hops = bob.follow(f"{base}&google_cm&google_sc&google_ula=12345&google_ula=24680", stop=stop)
    location = hops[-1].location or ""
    ok.check(
        "google_ula=12345,0" in location and "google_ula=24680,2" in location,
        "cookie set and verified; user list 12345 added, 24680 refused (another buyer's)",
    )
    monster = f"{urls.exchange}/pixel?google_nid={MONSTER}"
    hops = bob.follow(f"{monster}&google_hm=chocolate_chunk!", stop=stop)
    ok.check((hops[-1].location or "").endswith("google_hm=2"), "undecodable google_hm: status 2")
    page = bob.get(f"{urls.exchange}/optout")  # the page shows what is stored; nothing changes
    ok.check(bob.submit(page, "optout").status == 200, "opted out from the exchange's own page")
    hops = bob.follow(f"{base}&google_cm", stop=stop)
    ok.check("google_error=1" in (hops[-1].location or ""), "after the opt-out: error 1")
    ok.check(
        bob.get(f"{urls.exchange}/pixel?google_nid=nobody").status == 400,
        "unknown google_nid: 400, no redirect",
    )
    bob.close()


def crowd(page: str, urls: Urls, admin: Admin, ok: Expectations) -> None:
    print(f"\n== {MORE_BROWSERS} more browsers, {VISITS_EACH} visits each")
    started = time.monotonic()
    wins: Counter[tuple[str, str]] = Counter()
    matched = 0
    for _ in range(MORE_BROWSERS):
        browser = SimulatedBrowser()
        gid = None
        for _ in range(VISITS_EACH):
            hops = browser.visit(page)
            won = winner(hops)
            wins[won or ("house", "")] += 1
            gid = gid or gid_sent_to(hops, urls.finest)
        if gid and admin.finest_match(gid):
            matched += 1
        browser.close()
    elapsed = time.monotonic() - started
    visits = MORE_BROWSERS * VISITS_EACH
    print(f"  {visits} visits in {elapsed:.1f} s")
    for (nid, crid), count in sorted(wins.items()):
        print(f"  wins {nid:>15} {crid:<18} {count}")
    stats = admin.exchange_stats()
    monster = admin.buyer_stats(urls.monster)
    hosted_matches = monster.get("push", {})
    print(f"  FinestDSP match rate: {matched}/{MORE_BROWSERS}")
    print(f"  Cookie Monster's bid answers (hosted match data decides): {monster.get('bid')}")
    for nid in (FINEST, MONSTER):
        entry = stats.get(nid, {})
        print(
            f"  {nid}: bid requests {entry.get('bid_requests')}, wins {entry.get('wins')}, "
            f"pixel matches {entry.get('pushes_returned')}/{entry.get('pushes_issued')}, "
            f"frequency-capping violations {entry.get('frequency_cap_violations')}"
        )
    retargeted = wins[(FINEST, "retarget-shoes")] + wins[(MONSTER, "cookies-retarget")]
    ok.check(matched == MORE_BROWSERS, "every browser is in FinestDSP's match table")
    ok.check(
        retargeted >= MORE_BROWSERS * (VISITS_EACH - 1),
        f"every return visit was retargeted ({retargeted} retargeted wins)",
    )
    ok.check(
        all(stats.get(nid, {}).get("frequency_cap_violations") == 0 for nid in (FINEST, MONSTER)),
        "no buyer served the match tag to a browser it had matched (frequency capping)",
    )
    ok.check(sum(hosted_matches.values()) > 0, "pixel matching matched browsers for Cookie Monster")


def dmp_story(directory: Path, urls: Urls, page: str, ok: Expectations) -> None:
    """The DMP's sync funnel, then its data half, up to RetailDSP's list at the exchange and
    the auctions on ``page`` that use it."""
    print("\n== The DMP: a client's container tag, partner sync pixels, callbacks with IDs")
    run_dmp_stories(directory, urls.exchange, page, ok.check)


def run_demo(*, serve: bool = False) -> int:
    with tempfile.TemporaryDirectory(prefix="cookiematch-demo-") as tmp:
        directory = Path(tmp)
        with (
            serving([GidRelay()]) as (relay,),
            demo_stack(directory, retail_redirect=relay.url) as (_, urls),
            serve_publisher(urls.exchange, PUBLISHER) as publisher_port,
        ):
            page = f"http://{PUBLISHER}.localhost:{publisher_port}/"
            print("cookiematch demo, every role on the embedded store in", tmp)
            print(f"  exchange    {urls.exchange}\n  FinestDSP   {urls.finest}")
            print(f"  CookieMonst {urls.monster}\n  ExampleNews {page}")
            if serve:
                print("\nOpen the ExampleNews URL in a browser; Ctrl-C stops everything.")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    return 0
            ok = Expectations()
            admin = Admin(urls)
            jane = SimulatedBrowser()
            gid = scenario_one(jane, page, urls, admin, ok)
            scenario_two(jane, page, urls, admin, gid, ok)
            jane.close()
            protocol_corners(urls, ok)
            crowd(page, urls, admin, ok)
            dmp_story(directory, urls, page, ok)
    if ok.failures:
        print(f"\ndemo FAILED: {len(ok.failures)} expectation(s) not met")
        return 1
    print("\ndemo finished: everything matched as expected")
    return 0
