"""The DMP's data half in ``make demo``: one partner's data sent both ways, then segments,
overlap and an export to the exchange's user list, each step checked.

    1. in-band vs S2S   browsers of the client ``news`` sync with the CRM partner, whose redirect
                        carries each customer's attributes in-band (``/inband/crm``, cut to the
                        URL limit; some redirects lost, some browsers gone before it); the CRM
                        also uploads the same records to the ingestion API. A second visit syncs
                        more browsers, which resolves the records that waited (pending).
                        Arrivals are read from the DMP's funnel (``delivery``), and compared
                        with what was sent.
    2. segments         ``cookiematch dmp segments recompute``; sizes from the admin API
    3. overlap          ``GET /admin/v1/overlap`` of the two segments (exact)
    4. export           ``cookiematch dmp export`` of ``gold`` to RetailDSP's user list at the
                        exchange (its gids come through ``GidRelay``), checked at the exchange
    5. auction          a publisher page seen by a customer outside the list, then by a
                        member: the exchange asks RetailDSP (``require_user_lists``) only
                        for the member
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx
import msgspec

from cookiematch.demo.browser import SimulatedBrowser
from cookiematch.demo.dmp_story import (
    DMP_DEMO_TOKEN,
    PartnerStub,
    funnel_as_expected,
    partner_stubs,
    print_funnel,
    run_dmp_scenario,
    settled_funnel,
    write_dmp_demo_config,
)
from cookiematch.demo.stack import (
    ADMIN_TOKEN,
    RETAIL,
    RETAIL_LIST,
    RETAIL_LISTS_TOKEN,
    free_port,
    running,
)
from cookiematch.dmp.funnel import FunnelReport

Check = Callable[[bool, str], None]

CRM = "crm"
EXCHANGE_PARTNER = "exchange"
NEWS = "news"
INGEST_TOKEN = "demo-crm-ingest-token-0123456789"
INBAND_MAX_BYTES = 128
BROWSERS = 150
LEAVE_RATE = 0.1  # browsers gone before a redirect reaches the DMP, per visit
CRM_DROP_RATE = 0.15  # the CRM's redirects lost (timeouts, blockers...)
DESTINATION = "retail_list"
TIERS = ("gold", "silver", "bronze")
INTERESTS = ("running", "cycling", "hiking", "yoga", "tennis", "swimming", "football", "climbing")
CITIES = ("paris", "lyon", "berlin", "madrid", "milano", "amsterdam", "lisboa", "wien")
SEGMENTS = """
[[dmp.traits]]
name = "age"
type = "number"

[[dmp.traits]]
name = "interests"
type = "list"

[[dmp.segments]]
id = "gold"
description = "the CRM's gold-tier customers"
rule = { attribute = "tier", value = "gold" }

[[dmp.segments]]
id = "runners"
description = "customers interested in running"
rule = { attribute = "interests", value = "running" }
"""


def crm_records(count: int, seed: int = 5) -> dict[str, dict[str, Any]]:
    """The CRM's customers (partner uid -> 8 attributes), in the order it ranks them."""
    rng = random.Random(seed)
    records: dict[str, dict[str, Any]] = {}
    for number in range(1, count + 1):
        city = rng.choice(CITIES)
        records[f"crm-{number:05d}"] = {
            "tier": rng.choices(TIERS, (3, 4, 3))[0],
            "interests": rng.sample(INTERESTS, rng.randint(1, 4)),
            "age": rng.randint(18, 79),
            "city": city,
            "ltv": rng.randint(10, 5000),
            "newsletter": rng.random() < 0.6,
            "last_sku": f"SKU-{rng.randint(10000, 99999)}-{rng.choice(('navy', 'red', 'olive'))}",
            "store": f"store-{city}-{rng.randint(1, 40):02d}",
        }
    return records


def inband_pairs(attributes: dict[str, Any]) -> list[tuple[str, str]]:
    """The same attributes as in-band key-values (a list joined by ``.``)."""
    pairs = []
    for name, value in attributes.items():
        if isinstance(value, list):
            text = ".".join(value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        pairs.append((name, text))
    return pairs


@dataclass
class DataHalf:
    """The partners, client, segments and destination the data half adds to the demo's DMP."""

    crm: PartnerStub
    exchange: str  # the exchange as browsers reach it
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def exchange_admin(self) -> str:
        return _loopback(self.exchange)

    def settings(self) -> list[str]:
        return [f"inband_max_bytes = {INBAND_MAX_BYTES}", "recompute_interval_minutes = 0"]

    def tables(self) -> str:
        pixel = f"{self.exchange}/pixel?google_nid={RETAIL}&google_cm&google_sc"
        pixel += "&redir=${CALLBACK_URL}"  # passed through to RetailDSP's redirect (GidRelay)
        return f"""
[[dmp.clients]]
id = "{NEWS}"
partners = ["{CRM}", "{EXCHANGE_PARTNER}"]

[[dmp.partners]]
id = "{CRM}"
sync_url = "{self.crm.sync_url()}"
ingest_token = "{INGEST_TOKEN}"

[[dmp.partners]]
id = "{EXCHANGE_PARTNER}"
sync_url = "{pixel}"
{SEGMENTS}
[[dmp.destinations]]
id = "{DESTINATION}"
kind = "exchange_user_list"
url = "{self.exchange_admin}"
token = "{RETAIL_LISTS_TOKEN}"
user_list_id = {RETAIL_LIST}
nid = "{RETAIL}"
partner = "{EXCHANGE_PARTNER}"
"""


def _loopback(url: str) -> str:
    """``http://x.localhost:8720`` -> ``http://127.0.0.1:8720``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://127.0.0.1:{parts.port}"


def crm_stub(records: dict[str, dict[str, Any]]) -> PartnerStub:
    inband = {uid: inband_pairs(attributes) for uid, attributes in records.items()}
    return PartnerStub(CRM, drop_rate=CRM_DROP_RATE, seed=3, inband=inband,
                       inband_max_bytes=INBAND_MAX_BYTES)  # fmt: skip


@dataclass
class Customer:
    """A simulated browser whose user the CRM knows (its cookie was set on the CRM's site)."""

    crm_uid: str
    browser: SimulatedBrowser
    synced_on: int = 0  # the visit whose in-band redirect reached the DMP (0: none yet)

    def cookie(self, host: str, name: str) -> str | None:
        return self.browser.jar.get(host, {}).get(name)


class Dmp:
    """The demo DMP's admin API and CLI."""

    def __init__(self, base: str, config: Path) -> None:
        self.base = base
        self.config = config
        auth = {"Authorization": f"Bearer {DMP_DEMO_TOKEN}"}
        self.http = httpx.Client(base_url=_loopback(base), headers=auth, timeout=10)

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def funnel(self) -> FunnelReport:
        """The funnel once every worker's counts are in it."""
        return settled_funnel(self._read_funnel)

    def _read_funnel(self) -> FunnelReport:
        response = self.http.get("/admin/v1/funnel")
        response.raise_for_status()
        return msgspec.json.decode(response.content, type=FunnelReport)

    def cli(self, *args: str) -> str:
        """``cookiematch dmp <args> --config <config>``, its standard output."""
        argv = [sys.executable, "-m", "cookiematch", "dmp", *args, "--config", str(self.config)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"cookiematch dmp {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return done.stdout


def _page_view(customer: Customer, base: str, visit: int, leave: bool) -> int:
    """One page of ``news``: the container's /sync, then each pixel through its redirects
    (up to the DMP, unless the browser leaves first). The key-values that reached /inband."""
    browser = customer.browser
    browser.get(f"{base}/tag.js?client={NEWS}")
    sync = browser.get(f"{base}/sync?client={NEWS}")
    pixels: list[str] = msgspec.json.decode(sync.body).get("pixels", []) if sync.body else []
    arrived = 0
    for pixel in pixels:
        hops = browser.follow(pixel, stop=lambda url: leave and url.startswith(base))
        for hop in hops:
            if f"/inband/{CRM}?" in hop.url and hop.status == 200:
                customer.synced_on = customer.synced_on or visit
                kv = dict(parse_qsl(urlsplit(hop.url).query)).get("kv", "")
                arrived += len(kv.split(",")) if kv else 0
    return arrived


def _visits(customers: list[Customer], base: str, visit: int, rng: random.Random) -> int:
    return sum(_page_view(c, base, visit, rng.random() < LEAVE_RATE) for c in customers)


def upload(dmp: Dmp, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The CRM's records, server to server: one JSON Lines batch to the ingestion API."""
    body = b"\n".join(
        msgspec.json.encode({"uid": uid, "attributes": attributes})
        for uid, attributes in records.items()
    )
    headers = {"Authorization": f"Bearer {INGEST_TOKEN}", "Content-Type": "application/x-ndjson"}
    response = dmp.http.post(f"/api/v1/partners/{CRM}/records", content=body, headers=headers)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def _percent(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.1%})" if whole else "0/0"


def inband_versus_s2s(dmp: Dmp, half: DataHalf, customers: list[Customer], check: Check) -> None:
    print("\n== The same CRM data two ways: in-band through the redirect, and server to server")
    records = half.records
    held = sum(len(attributes) for attributes in records.values())
    rng = random.Random(17)
    print(f"  {len(customers)} customers, {held} attribute values at the CRM; in-band limit "
          f"{INBAND_MAX_BYTES} bytes of query, {CRM_DROP_RATE:.0%} of its redirects lost, "
          f"{LEAVE_RATE:.0%} of browsers gone before the redirect")  # fmt: skip
    sent_inband = _visits(customers, dmp.base, 1, rng)
    answer = upload(dmp, records)
    print(f"  upload of {answer['records']} records: {answer['accepted']} accepted, "
          f"{answer['pending']} pending (not synced yet), "
          f"{answer['rejected']} rejected")  # fmt: skip
    check(
        answer["accepted"] + answer["pending"] == len(records) and answer["pending"] > 0,
        "the records of customers not synced yet wait as pending",
    )
    print("  a second visit of every customer syncs more of them")
    sent_inband += _visits(customers, dmp.base, 2, rng)
    delivery = dmp.funnel().delivery[CRM]
    inband, s2s = delivery.inband, delivery.s2s
    assert inband is not None and s2s is not None
    print(f"  in-band: {_percent(inband.values, held)} attribute values arrived "
          f"({inband.arrived} redirects stored of {inband.sent} pixels; "
          f"{half.crm.values_cut} values cut to fit the URL)")  # fmt: skip
    print(f"  S2S:     {_percent(s2s.values, held)} attribute values arrived "
          f"({s2s.arrived} of {s2s.sent} records applied, {s2s.waiting} still waiting "
          "for their sync)")  # fmt: skip
    synced = [c for c in customers if c.synced_on]
    if inband.failed:
        print(f"  in-band: {inband.failed} redirects ({inband.failed_values} values) reached the "
              "DMP but could not be stored (the store failed or passed its deadline)")  # fmt: skip
    check(
        inband.values + inband.failed_values == sent_inband,
        f"the DMP counted every in-band value that reached it: {inband.values} stored + "
        f"{inband.failed_values} failed to store, of {sent_inband} sent",
    )
    check(
        s2s.arrived == len(synced) and s2s.waiting == len(records) - len(synced),
        "S2S: every synced customer's record applied, the others waiting",
    )
    check(
        s2s.values == sum(len(records[c.crm_uid]) for c in synced) > inband.values,
        "S2S delivered every value of the synced customers, more than in-band",
    )
    resolved = dmp.funnel().ingestion[CRM].counts["resolved"]
    late = [c for c in customers if c.synced_on == 2]
    print(f"  pending records resolved by the second visit's syncs: {resolved}")
    check(resolved == len(late) > 0, "each record that waited was applied when its sync came")
    if late:
        dmp_uid = late[0].cookie(urlsplit(dmp.base).hostname or "", "dmp_id")
        profile = dmp.get(f"/admin/v1/profiles/{dmp_uid}")
        shown = {k: profile["attributes"].get(k) for k in ("tier", "interests", "age")}
        print(f"  e.g. {late[0].crm_uid}, synced on the second visit: "
              f"{len(profile['attributes'])} attributes, {shown}")  # fmt: skip
        check(
            profile["attributes"] == records[late[0].crm_uid],
            "its profile holds the uploaded record",
        )


def segments_and_overlap(
    dmp: Dmp, half: DataHalf, customers: list[Customer], check: Check
) -> list[Customer]:
    print("\n== Segments over the ingested profiles, and their overlap")
    dmp.cli("segments", "recompute")
    sizes = {s["id"]: s["size"] for s in dmp.get("/admin/v1/segments")["segments"]}
    synced = [c for c in customers if c.synced_on]
    gold = [c for c in synced if half.records[c.crm_uid]["tier"] == "gold"]
    runners = [c for c in synced if "running" in half.records[c.crm_uid]["interests"]]
    print(f"  recomputed: gold {sizes.get('gold')}, runners {sizes.get('runners')}")
    check(
        (sizes.get("gold"), sizes.get("runners")) == (len(gold), len(runners)),
        "segment sizes match the synced customers' records",
    )
    report = dmp.get("/admin/v1/overlap", audience=["segment:gold", "segment:runners"],
                     mode="exact")  # fmt: skip
    pair = report["pairs"][0]
    overlap = round(pair["overlap"]["estimate"])
    print(f"  gold ∩ runners: {overlap} of {report['population']} profiles, "
          f"jaccard {pair['jaccard']:.3f}, affinity {pair['affinity']:.2f}")  # fmt: skip
    both = {c.crm_uid for c in gold} & {c.crm_uid for c in runners}
    check(overlap == len(both), "the overlap is exact")
    return gold


def export_to_exchange(
    dmp: Dmp, half: DataHalf, gold: list[Customer], check: Check
) -> list[Customer]:
    print(f"\n== The gold segment exported to {RETAIL}'s user list {RETAIL_LIST} at the exchange")
    print(f"  (with {RETAIL}'s credential, scoped to its own user lists: not the admin token)")
    report = msgspec.json.decode(
        dmp.cli("export", "--segment", "gold", "--destination", DESTINATION, "--json")
    )
    print(f"  {report['members']} members: {report['accepted']} accepted by the exchange, "
          f"{report['unmatched']} without a gid, {report['failed']} failed")  # fmt: skip
    check(
        report["accepted"] == len(gold) and report["failed"] == 0,
        "every gold member went to the exchange's list by its RetailDSP gid",
    )
    members = [c for c in gold if c.cookie("exchange.localhost", "cm_id")]
    with _exchange_admin(half) as exchange:
        stats = _settled(
            lambda: exchange.get(f"/admin/v1/user_lists/{RETAIL_LIST}/stats").json(),
            lambda found: found.get("added") == len(gold),
        )
        print(f"  the exchange's list {RETAIL_LIST}: {stats.get('added')} added this week")
        check(stats.get("added") == len(gold), "the exchange counted each member added")
        in_list = sum(_in_list(exchange, c) for c in members)
    print(f"  {in_list} of the segment's browsers are members by the exchange's own records")
    check(in_list == len(gold), "each gold browser's exchange cookie is in the list")
    return members


T = TypeVar("T")


def _settled(read: Callable[[], T], done: Callable[[T], bool], seconds: float = 5.0) -> T:
    """``read()`` until ``done`` or ``seconds`` passed: the exchange's workers write their
    counts every second, and an admin answer adds up what they wrote."""
    deadline = time.monotonic() + seconds
    found = read()
    while not done(found) and time.monotonic() < deadline:
        time.sleep(0.2)
        found = read()
    return found


def _exchange_admin(half: DataHalf) -> httpx.Client:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    return httpx.Client(base_url=half.exchange_admin, headers=auth, timeout=10)


def _in_list(exchange: httpx.Client, customer: Customer) -> bool:
    """The exchange's access report for the browser (its cookie) lists ``RETAIL_LIST``."""
    browser_id = customer.cookie("exchange.localhost", "cm_id")
    report = exchange.get(f"/admin/v1/subjects/{browser_id}").json()
    return any(
        record.get("kind") == "user_list" and record.get("field") == str(RETAIL_LIST)
        for record in report.get("records", [])
    )


def auction_on_user_list(
    half: DataHalf, members: list[Customer], others: list[Customer], page: str, check: Check
) -> None:
    """The loop closed: RetailDSP pre-targets its list (``require_user_lists``), so the
    exchange asks it to bid for a member's impression and not for another customer's."""
    print(f"\n== The next auctions on ExampleNews: {RETAIL} is asked only for its list's members")
    with _exchange_admin(half) as exchange:

        def asked() -> int:
            buyers = exchange.get("/admin/v1/stats").json().get("buyers", [])
            return sum(int(b.get("bid_requests") or 0) for b in buyers if b.get("nid") == RETAIL)

        before = asked()
        others[0].browser.visit(page)
        outsider = asked() - before
        members[0].browser.visit(page)
        member = _settled(lambda: asked() - before - outsider, lambda n: n > 0)
    print(f"  bid requests to {RETAIL}: {outsider} for a customer outside the list, "
          f"{member} for a gold member")  # fmt: skip
    check(outsider == 0 and member == 1, f"{RETAIL} bid only on its list's member")


def run_data_story(dmp: Dmp, half: DataHalf, page: str, check: Check) -> None:
    """Steps 1-5 with a browser per CRM customer; ``page``: the publisher's page."""
    customers = []
    crm_host = f"{CRM}.localhost"
    for crm_uid in half.records:
        browser = SimulatedBrowser()
        browser.jar[crm_host] = {"puid": crm_uid}
        customers.append(Customer(crm_uid, browser))
    try:
        inband_versus_s2s(dmp, half, customers, check)
        gold = segments_and_overlap(dmp, half, customers, check)
        members = export_to_exchange(dmp, half, gold, check)
        others = [c for c in customers if c.synced_on and c not in gold]
        auction_on_user_list(half, members, others, page, check)
    finally:
        for customer in customers:
            customer.browser.close()


@contextlib.contextmanager
def dmp_with_data_half(
    directory: Path, exchange: str, browsers: int = BROWSERS, extra: Mapping[str, str] = {}
) -> Iterator[tuple[Dmp, DataHalf, list[PartnerStub]]]:
    """The funnel's partner stubs, the CRM stub and a DMP serving all of them (``extra``:
    environment overrides of the DMP's configuration)."""
    records = crm_records(browsers)
    with partner_stubs() as stubs, partner_stubs([crm_stub(records)]) as (crm,):
        half = DataHalf(crm, exchange, records)
        port = free_port()
        base = f"http://dmp.localhost:{port}"
        config = write_dmp_demo_config(
            directory, port, stubs, settings=half.settings(), tables=half.tables()
        )
        with running(config, dict(extra), port, directory / "dmp.log"):
            yield Dmp(base, config), half, stubs


def run_dmp_stories(directory: Path, exchange: str, page: str, check: Check) -> None:
    """The sync funnel (``demo/dmp_story.py``), then the data half, on one DMP."""
    with dmp_with_data_half(directory, exchange) as (dmp, half, stubs):
        print(f"DMP on {dmp.base}; partners: {', '.join(s.id for s in stubs)}, {CRM}, "
              f"{EXCHANGE_PARTNER} ({RETAIL}'s gids)")  # fmt: skip
        report = run_dmp_scenario(dmp.base, stubs)
        print_funnel(report)
        check(
            funnel_as_expected(report),
            "the funnel shows the lossy partner's lost callbacks and none for the reliable ones",
        )
        run_data_story(dmp, half, page, check)
