"""The privacy policy enforced by the exchange: the match tag, the ad request and its bid
requests, on a real SQLite store (docs/privacy.md, "Enforcement: the exchange").

TC strings are made bit by bit (``protocol/tcf_builder.py``); the GPP string was written by the
IAB's ``@iabgpp/cmpapi`` (``tests/privacy/test_policy.py``)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cookiematch.exchange import keys
from cookiematch.exchange.ad_service import AdRequest, AdService
from cookiematch.exchange.auction import Auction
from cookiematch.exchange.browser_record import CREATED, browser_record_key, seconds
from cookiematch.exchange.consent import may_store_and_sync, truncate_ip
from cookiematch.exchange.cookie_match import Browser, CookieMatchService
from cookiematch.exchange.model import Buyer, ExchangeSettings, Publisher, UserList
from cookiematch.exchange.monitoring import BuyerMonitor
from cookiematch.exchange.outcomes import PushRecorded, RedirectToBuyer, VerifyCookie
from cookiematch.exchange.pixel_matching import PixelMatcher
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.privacy.policy import Operation, PrivacyPolicy, PrivacySettings, Reason
from cookiematch.privacy.request import NO_PRIVACY, RequestPrivacy, read_privacy
from cookiematch.privacy.signals import SILENT
from cookiematch.protocol.matchtag import parse_match_tag
from cookiematch.protocol.privacy import PrivacySignals
from cookiematch.protocol.push import PushTokens
from cookiematch.protocol.query import QueryParam, parse_query
from cookiematch.protocol.redirect import RedirectTemplate
from cookiematch.protocol.tcf import TCString
from cookiematch.protocol.undecodable import Undecodable
from cookiematch.protocol.userid import UserIdCipher
from cookiematch.storage import Store
from protocol.tcf_builder import core, id_bits, vendor_bitfield

from support.clock import FakeClock

BROWSER = bytes(range(16))
NEW_BROWSER = bytes(range(100, 116))
KNOWN = Browser(BROWSER)
NOW = 1_700_000_000
MALFORMED = "malformed or repeated request parameter"
XYZ, MONSTER, PUSHER = 32, 50, 70  # the buyers' GVL vendor IDs


def tc(*vendors: int, purposes: range = range(1, 11)) -> str:
    return core(
        purpose_consents=id_bits(purposes, 24), vendor_consents=vendor_bitfield(100, vendors)
    )


EVERYONE = tc(XYZ, MONSTER, PUSHER)
NOT_XYZ = tc(MONSTER, PUSHER)
NOT_PUSHER = tc(XYZ, MONSTER)
ONLY_PUSHER = tc(PUSHER)
NO_PURPOSE_ONE = tc(XYZ, MONSTER, PUSHER, purposes=range(2, 11))
US_SALE_OPT_OUT = "DBABLA~CAAQAAAAAABA.QA"  # usnat SaleOptOut=1 (section 7)

CONSENT = f"gdpr=1&gdpr_consent={EVERYONE}"
REFUSALS = {  # query -> the reason the sync (or the cookie before it) is refused
    "gdpr=1": Reason.NO_CONSENT_STRING,
    "gdpr=1&gdpr_consent=AAAA": Reason.UNDECODABLE,
    f"gdpr=1&gdpr_consent={ONLY_PUSHER}": Reason.VENDOR,
    f"gdpr=1&gdpr_consent={NO_PURPOSE_ONE}": Reason.PURPOSE,
    "us_privacy=1YYN": Reason.US_OPT_OUT,
    f"gpp={US_SALE_OPT_OUT}&gpp_sid=7": Reason.US_OPT_OUT,
    "gdpr=2": Reason.NO_CONSENT_STRING,  # malformed: GDPR applies, and there is no string
    "gdpr=1&gdpr_consent=not+base64": Reason.UNDECODABLE,
    f"gdpr=1&gdpr_consent={EVERYONE}&gdpr_consent={EVERYONE}": Reason.UNDECODABLE,
    "us_privacy=2YYN": Reason.UNDECODABLE,
}


def privacy(query: str, sec_gpc: str | None = None) -> RequestPrivacy:
    return read_privacy(parse_query(query), sec_gpc)


# -- reading the signals ------------------------------------------------------------------


def test_a_request_without_privacy_parameters_is_silent() -> None:
    assert privacy("google_nid=x&google_cm&p1=v1") is NO_PRIVACY
    assert privacy("google_nid=x", "0") is NO_PRIVACY
    assert NO_PRIVACY.signals is SILENT
    assert privacy("gdpr=&gdpr_consent").signals == SILENT  # empty counts as absent


def test_well_formed_parameters_are_decoded_once_and_cached() -> None:
    found = privacy(f"p=1&gdpr=1&gdpr_consent={EVERYONE}&us_privacy=1ynn&gpp_sid=2,7")
    assert found.params == PrivacySignals(
        gdpr="1", gdpr_consent=EVERYONE, us_privacy="1YNN", gpp_sid="2,7"
    )
    assert found.signals.gdpr is True and isinstance(found.signals.tc, TCString)
    assert found.signals.gpp_sid == (2, 7)
    again = privacy(f"gdpr=1&gdpr_consent={EVERYONE}&us_privacy=1ynn&gpp_sid=2,7&q=2")
    assert again is found  # the same parameters, in the same order: one decode
    assert privacy("x=1", "1").signals.gpc and privacy("x=1", " 1\t").signals.gpc


@pytest.mark.parametrize(
    ("query", "field", "value"),
    [
        ("gdpr=2", "gdpr", True),
        ("gdpr=1&gdpr=0", "gdpr", True),
        ("gdpr_consent=a+b", "tc", Undecodable(f"gdpr_consent: {MALFORMED}")),
        ("us_privacy=1YY", "us_privacy", Undecodable(f"us_privacy: {MALFORMED}")),
        ("gpp=a*b", "gpp", Undecodable(f"gpp: {MALFORMED}")),
    ],
)  # fmt: skip
def test_a_malformed_parameter_is_a_signal_that_does_not_decode(
    query: str, field: str, value: object
) -> None:
    found = privacy(f"{query}&us_privacy=1NNN")
    assert getattr(found.signals, field) == value
    if field != "us_privacy":  # the well-formed ones are kept
        assert found.params.us_privacy == "1NNN"
    assert found.params.gdpr in ("", "1") and "*" not in found.params.gpp


def test_a_malformed_gpp_sid_puts_every_section_in_force() -> None:
    found = privacy(f"gpp={US_SALE_OPT_OUT}&gpp_sid=seven")
    assert found.signals.gpp_sid is None and found.params.gpp_sid == ""
    policy = PrivacyPolicy()
    assert policy.decide(Operation.SYNC, found.signals, XYZ).reason is Reason.US_OPT_OUT
    assert privacy("gpp_sid=x").signals == SILENT


@given(st.lists(st.sampled_from(["gdpr", "gdpr_consent", "us_privacy", "gpp", "gpp_sid"])),
       st.lists(st.text(max_size=40)))  # fmt: skip
def test_reading_never_raises(names: list[str], values: list[str]) -> None:
    params = [QueryParam(n, v) for n, v in zip(names, values, strict=False)]
    found = read_privacy(params, None)
    assert isinstance(found, RequestPrivacy)


# -- the match tag's two questions ------------------------------------------------------


def test_store_and_sync_asks_the_cookie_first_and_counts_every_answer() -> None:
    policy = PrivacyPolicy(PrivacySettings(host_vendor_id=XYZ))
    host_refused = privacy(f"gdpr=1&gdpr_consent={NOT_XYZ}").signals
    everyone = privacy(CONSENT).signals
    for _ in range(2):
        assert not may_store_and_sync(policy, host_refused, MONSTER)
        assert may_store_and_sync(policy, everyone, MONSTER)
        assert not may_store_and_sync(policy, everyone, None)
    assert policy.counts == {
        (Operation.STORE_ID, Reason.VENDOR): 2,
        (Operation.STORE_ID, Reason.CONSENTED): 4,
        (Operation.SYNC, Reason.CONSENTED): 2,
        (Operation.SYNC, Reason.NO_VENDOR_ID): 2,
    }


@pytest.mark.parametrize(
    ("ip", "truncated"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:1234:5678:9abc::1", "2001:db8:1234::"),
        ("::ffff:198.51.100.9", "198.51.100.0"),
        ("::1", "::"),
        ("not an address", None),
        (None, None),
    ],
)
def test_truncate_ip(ip: str | None, truncated: str | None) -> None:
    assert truncate_ip(ip) == truncated


# -- the match tag ------------------------------------------------------------------------


class Exchange:
    """The Cookie Matching Service and the ad server over one store, one policy."""

    def __init__(self, store: Store, settings: PrivacySettings | None = None) -> None:
        self.store = store
        self.clock = FakeClock()
        self.policy = PrivacyPolicy(settings)
        self.cipher = UserIdCipher({1: b"k" * 32})
        self.push = PushTokens(self.cipher, ttl_seconds=3600)
        exchange = ExchangeSettings()
        buyers = [
            Buyer("xyz", _url("xyz"), bidder_url="http://xyz.example/bid", gvl_vendor_id=XYZ),
            Buyer("monster", _url("monster"), hosted_match=True,
                  bidder_url="http://monster.example/bid", gvl_vendor_id=MONSTER),
            Buyer("pusher", _url("pusher"), push_url=_url("pusher", "push"), pixel_matching=True,
                  gvl_vendor_id=PUSHER),
            Buyer("unlisted", _url("unlisted"), bidder_url="http://unlisted.example/bid"),
        ]  # fmt: skip
        self.registry = ExchangeRegistry(store, buyers, [UserList(12345, owner="xyz")])
        self.monitor = BuyerMonitor(store, exchange, clock=self.clock, worker_id="w")
        self.service = CookieMatchService(
            registry=self.registry,
            store=store,
            cipher=self.cipher,
            push_tokens=self.push,
            settings=exchange,
            clock=self.clock,
            new_browser_id=lambda: NEW_BROWSER,
            policy=self.policy,
        )
        self.bid_requests: dict[str, list[dict[str, Any]]] = {}
        self.ads = AdService(
            registry=self.registry,
            publishers=[Publisher("news")],
            store=store,
            cipher=self.cipher,
            auction=Auction(self, self.monitor, clock=self.clock),
            pixel_matcher=PixelMatcher(
                cipher=self.cipher,
                push_tokens=self.push,
                settings=exchange,
                monitor=self.monitor,
                clock=self.clock,
                random=lambda: 0.0,
            ),
            settings=exchange,
            clock=self.clock,
            new_browser_id=lambda: NEW_BROWSER,
            new_auction_id=lambda: "auction-1",
            policy=self.policy,
        )

    async def post(self, url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        """The bidders: every request recorded, no bid."""
        nid = urlsplit(url).hostname.split(".")[0]  # type: ignore[union-attr]
        self.bid_requests.setdefault(nid, []).append(json.loads(body))
        return 204, b""

    async def tag(self, query: str, browser: Browser = KNOWN, sec_gpc: str | None = None) -> object:
        request = parse_match_tag(parse_query(query))
        buyer = self.registry.buyer(request.nid)
        assert buyer is not None
        signals = read_privacy(request.params, sec_gpc).signals
        return await self.service.match(request, buyer, browser, "https", signals)

    async def nothing_written(self) -> bool:
        return (
            await self.store.get(keys.hosted_match_key(BROWSER, "monster")) is None
            and await self.store.hgetall(keys.user_lists_key(BROWSER)) == {}
            and await self.store.hgetall(keys.pixel_matches_key(BROWSER)) == {}
        )


def _url(nid: str, path: str = "match") -> RedirectTemplate:
    return RedirectTemplate.compile(f"http://{nid}.example/{path}?id=")


def redirect(outcome: object) -> list[tuple[str, str]]:
    assert isinstance(outcome, RedirectToBuyer), outcome
    return parse_qsl(urlsplit(outcome.location).query, keep_blank_values=True)


async def test_consent_changes_nothing(store: Store) -> None:
    exchange = Exchange(store)
    outcome = await exchange.tag(f"google_nid=xyz&google_cm&google_ula=12345&{CONSENT}")
    params = redirect(outcome)
    assert params[:3] == [("id", ""), ("gdpr", "1"), ("gdpr_consent", EVERYONE)]  # passed on
    gid = dict(params)["google_gid"]
    assert exchange.cipher.decrypt(gid, "xyz", 1) == BROWSER
    assert dict(params)["google_ula"] == "12345,0"
    assert await store.hgetall(keys.user_lists_key(BROWSER))
    hosted = await exchange.tag(f"google_nid=monster&google_hm=Q29va2ll&{CONSENT}")
    assert redirect(hosted) == [("id", ""), ("gdpr", "1"), ("gdpr_consent", EVERYONE)]
    assert await store.get(keys.hosted_match_key(BROWSER, "monster")) == b"Cookie"
    fresh = await exchange.tag(f"google_nid=xyz&google_cm&google_sc&{CONSENT}", Browser(None))
    assert isinstance(fresh, VerifyCookie)
    assert exchange.policy.counts[Operation.SYNC, Reason.CONSENTED] == 3


@pytest.mark.parametrize(("query", "reason"), REFUSALS.items())
async def test_refused_tags_answer_error_1_and_write_nothing(
    store: Store, query: str, reason: Reason
) -> None:
    exchange = Exchange(store)
    tag = f"google_nid=xyz&google_cm&google_ula=12345&google_hm=Q29va2ll&{query}"
    params = redirect(await exchange.tag(tag))
    assert params[-1] == ("google_error", "1")
    assert not any(name.startswith("google_") for name, _ in params[:-1])
    assert [p for p in params if not p[0].startswith("google_")] == [("id", "")] + [
        (p.name, p.value or "") for p in parse_query(query)
    ]  # the privacy parameters reach the buyer as they came, malformed ones included
    hosted = await exchange.tag(f"google_nid=monster&google_hm=Q29va2ll&{query}")
    assert redirect(hosted)[-1] == ("google_error", "1")
    assert await exchange.nothing_written()
    no_cookie = await exchange.tag(f"google_nid=xyz&google_cm&google_sc&{query}", Browser(None))
    assert redirect(no_cookie)[-1] == ("google_error", "1")  # no cookie set to verify
    counts = exchange.policy.counts
    refused = counts[Operation.STORE_ID, reason] + counts[Operation.SYNC, reason]
    assert refused >= 2


async def test_gpc_refuses_the_sync_not_the_cookie(store: Store) -> None:
    exchange = Exchange(store)
    outcome = await exchange.tag("google_nid=xyz&google_cm", sec_gpc="1")
    assert redirect(outcome) == [("id", ""), ("google_error", "1")]
    assert exchange.policy.counts[Operation.STORE_ID, Reason.NOT_REGULATED] == 1
    assert exchange.policy.counts[Operation.SYNC, Reason.GPC] == 1


async def test_a_refused_cookie_is_not_read(store: Store) -> None:
    exchange = Exchange(store, PrivacySettings(host_vendor_id=99))  # the host lacks consent
    outcome = await exchange.tag(f"google_nid=xyz&google_cm&{CONSENT}", Browser(BROWSER))
    assert redirect(outcome)[-1] == ("google_error", "1")
    assert exchange.policy.counts == {(Operation.STORE_ID, Reason.VENDOR): 1}  # sync not asked


async def test_a_buyer_without_vendor_id_is_refused_under_gdpr(store: Store) -> None:
    exchange = Exchange(store)
    outcome = await exchange.tag(f"google_nid=unlisted&google_cm&{CONSENT}")
    assert redirect(outcome)[-1] == ("google_error", "1")
    assert exchange.policy.counts[Operation.SYNC, Reason.NO_VENDOR_ID] == 1


async def test_a_refused_push_is_not_recorded(store: Store) -> None:
    exchange = Exchange(store)
    token = exchange.push.issue(BROWSER, "pusher", NOW)
    tag = f"google_nid=pusher&google_push={token}"
    refused = await exchange.tag(f"{tag}&gdpr=1&gdpr_consent={NOT_PUSHER}")
    assert redirect(refused) == [
        ("id", ""), ("gdpr", "1"), ("gdpr_consent", NOT_PUSHER), ("google_error", "1"),
    ]  # fmt: skip
    assert await exchange.nothing_written()
    assert await exchange.tag(f"{tag}&{CONSENT}") == PushRecorded("pusher", stored=True)


async def test_without_signals_the_defaults_judge(store: Store) -> None:
    exchange = Exchange(store, PrivacySettings(gdpr_default=True))
    outcome = await exchange.tag("google_nid=xyz&google_cm")
    assert redirect(outcome) == [("id", ""), ("google_error", "1")]
    assert exchange.policy.counts == {(Operation.STORE_ID, Reason.NO_CONSENT_STRING): 1}
    assert "google_gid" in dict(redirect(await exchange.tag(f"google_nid=xyz&google_cm&{CONSENT}")))


# -- the ad request -----------------------------------------------------------------------

NEWS = Publisher("news")


async def serve(
    exchange: Exchange,
    query: str = "",
    browser: Browser = KNOWN,
    ip: str | None = "203.0.113.77",
    sec_gpc: str | None = None,
    publisher: Publisher = NEWS,
) -> Any:
    request = AdRequest(publisher, "top", browser, "https", ip=ip, privacy=privacy(query, sec_gpc))
    return await exchange.ads.serve(request)


async def known_browser(store: Store) -> None:
    """A browser seen an hour ago, with hosted match data for ``monster``."""
    await store.hset(browser_record_key(BROWSER), {CREATED: seconds(NOW - 3600)})
    await store.set(keys.hosted_match_key(BROWSER, "monster"), b"\x01\x02")


async def test_no_signal_no_regs(store: Store) -> None:
    exchange = Exchange(store)
    await known_browser(store)
    served = await serve(exchange)
    for nid in ("xyz", "monster", "unlisted"):
        [sent] = exchange.bid_requests[nid]
        assert "regs" not in sent and "consent" not in sent["user"]
        assert sent["user"]["id"] and sent["device"]["ip"] == "203.0.113.77"
    assert served.pixel_match is not None and served.pixel_match.nid == "pusher"


async def test_bid_requests_carry_the_signals_and_ids_only_where_consented(store: Store) -> None:
    exchange = Exchange(store)
    await known_browser(store)
    served = await serve(exchange, f"gdpr=1&gdpr_consent={NOT_XYZ}&gpp_sid=2&us_privacy=1NNN")
    regs = {"gdpr": 1, "us_privacy": "1NNN", "gpp_sid": [2]}
    xyz, monster, unlisted = (exchange.bid_requests[n][0] for n in ("xyz", "monster", "unlisted"))
    for refused in (xyz, unlisted):  # no consent for vendor 32; no vendor ID at all
        assert refused["regs"] == regs
        assert refused["user"] == {"consent": NOT_XYZ}  # no id, buyeruid or cookie data
        assert refused["device"]["ip"] == "203.0.113.0"
    assert monster["regs"] == regs
    assert monster["user"]["consent"] == NOT_XYZ and monster["user"]["buyeruid"] == "AQI"
    assert exchange.cipher.decrypt(monster["user"]["id"], "monster", 1) == BROWSER
    assert monster["device"]["ip"] == "203.0.113.77"
    assert served.pixel_match is not None  # pusher consented
    counts = exchange.policy.counts
    assert counts[Operation.PERSONALISE, Reason.VENDOR] == 1
    assert counts[Operation.PERSONALISE, Reason.NO_VENDOR_ID] == 1
    assert counts[Operation.SYNC, Reason.CONSENTED] == 1


async def test_memberships_are_used_only_for_a_buyer_allowed_to_personalise(
    store: Store,
) -> None:
    exchange = Exchange(store)
    await known_browser(store)
    await store.hset(keys.user_lists_key(BROWSER), {"12345": b"1"}, ttl=3600)
    await serve(exchange)
    assert exchange.bid_requests["xyz"][0]["user"]["ext"]["user_lists"] == [12345]
    assert "user_lists" not in exchange.bid_requests["monster"][0]["user"]["ext"]  # not its list
    await serve(exchange, f"gdpr=1&gdpr_consent={NOT_XYZ}")
    assert exchange.bid_requests["xyz"][1]["user"] == {"consent": NOT_XYZ}
    # pre-targeting on the list: without personalise the membership is not used, not asked
    xyz = exchange.registry.buyer("xyz")
    assert xyz is not None
    await exchange.registry.put_buyer(msgspec.structs.replace(xyz, require_user_lists=(12345,)))
    await serve(exchange, f"gdpr=1&gdpr_consent={NOT_XYZ}")
    assert len(exchange.bid_requests["xyz"]) == 2
    await serve(exchange)
    assert len(exchange.bid_requests["xyz"]) == 3


async def test_no_pixel_match_for_a_buyer_refused_sync(store: Store) -> None:
    exchange = Exchange(store)
    await known_browser(store)
    served = await serve(exchange, f"gdpr=1&gdpr_consent={NOT_PUSHER}")
    assert served.pixel_match is None
    assert await store.hgetall(browser_record_key(BROWSER)) == {CREATED: seconds(NOW - 3600)}
    assert exchange.policy.counts[Operation.SYNC, Reason.VENDOR] == 1


@pytest.mark.parametrize("query", ["gdpr=1", "gdpr=1&gdpr_consent=AAAA", "gdpr=yes"])
async def test_a_refused_cookie_is_neither_read_nor_set(store: Store, query: str) -> None:
    exchange = Exchange(store)
    await known_browser(store)
    served = await serve(exchange, query)
    assert served.set_browser_id is None and served.pixel_match is None
    for sent in exchange.bid_requests.values():
        assert not {"id", "buyeruid", "ext"} & set(sent[0]["user"])
        assert sent[0]["regs"] == {"gdpr": 1}
        assert sent[0]["device"]["ip"] == "203.0.113.0"
    new = await serve(exchange, query, Browser(None))
    assert new.set_browser_id is None
    assert await store.hgetall(browser_record_key(NEW_BROWSER)) == {}


async def test_gpc_and_us_opt_outs_keep_the_cookie_and_drop_the_ids(store: Store) -> None:
    exchange = Exchange(store)
    new = await serve(exchange, browser=Browser(None), ip="2001:db8:1234:5678::9", sec_gpc="1")
    assert new.set_browser_id == NEW_BROWSER  # store_id is not a sale
    for sent in exchange.bid_requests.values():
        assert sent[0]["user"] == {} and "regs" not in sent[0]  # GPC is a header, not a field
        assert sent[0]["device"]["ip"] == "2001:db8:1234::"
    exchange.bid_requests.clear()
    await serve(exchange, f"gpp={US_SALE_OPT_OUT}&gpp_sid=7")
    for sent in exchange.bid_requests.values():
        assert sent[0]["user"] == {}
        assert sent[0]["regs"] == {"gpp": US_SALE_OPT_OUT, "gpp_sid": [7]}


@pytest.mark.parametrize("query", ["", CONSENT])
async def test_a_child_directed_publisher_gets_nothing_personal(store: Store, query: str) -> None:
    exchange = Exchange(store)
    await known_browser(store)
    kids = Publisher("kids", coppa=True)
    served = await serve(exchange, query, publisher=kids)
    assert served.set_browser_id is None and served.pixel_match is None
    for sent in exchange.bid_requests.values():
        assert not {"id", "buyeruid", "ext"} & set(sent[0]["user"])
        assert sent[0]["regs"]["coppa"] == 1
        assert sent[0]["device"]["ip"] == "203.0.113.0"
    new = await serve(exchange, query, Browser(None), publisher=kids)
    assert new.set_browser_id is None
    assert exchange.policy.counts[Operation.STORE_ID, Reason.COPPA] == 2
