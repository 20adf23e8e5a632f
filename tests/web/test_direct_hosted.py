"""The hosted match's common case, alone or with a cookie match, answered from the RSGI scope
(``web/exchange/direct_pixel``, ``CommonMatch.hosted``) against the general path
(``ExchangeRoutes.pixel``): for generated match tags carrying ``google_hm`` (valid, padded,
percent-encoded, too long, undecodable, duplicated), cookies, headers and buyers (hosted or
not, throttled, with an ``%%GOOGLE_HM%%`` macro), under several configurations (one deciding
by privacy defaults), both answer the same bytes, count the same and leave the same records in
the store (value and lifetime).
"""

from __future__ import annotations

import base64
import inspect
import random
import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cookiematch.exchange import keys
from cookiematch.protocol.cookies import format_browser_id
from cookiematch.web.http import Headers

from conftest import free_port
from support.configs import write_exchange_config
from support.direct_paths import InProcess, Scope
from support.match_tags import BUYER_TABLES, cookie_headers, queries

HOSTED_BUYERS = (
    '[[exchange.buyers]]\nnid = "hm_macros"\nhosted_match = true\n'
    'redirect_url = "https://hm.example/s?g=%%GOOGLE_GID%%&v=%%GOOGLE_CVER%%%%GOOGLE_HM_PAIR%%&x=1"'
    '\n\n[[exchange.buyers]]\nnid = "hm_vendor"\nhosted_match = true\ngvl_vendor_id = 32\n'
    'redirect_url = "http://hmv.example/cm"\n\n'
    '[[exchange.buyers]]\nnid = "hm_throttled"\nhosted_match = true\n'
    'hosted_match_writes_per_second = 1e9\nredirect_url = "http://hmt.example/cm?a=b"\n\n'
)
HOSTED = ["ad_network_xyz", "hm_macros", "hm_vendor"]  # the flat path may answer these
OTHERS = ["hm_throttled", "bare", "limited", "unknown"]  # the general path's
# a loaded machine must not fail one path's write and not the other's (google_hm=4)
PATIENT = "store_deadline_ms = 9000\nauction_timeout_ms = 10000\n"
VARIANTS = {
    "default": "",
    # a host vendor and purposes to judge signals by: signals go to the general path
    "privacy": "[privacy]\nhost_vendor_id = 755\nstore_id_purposes = [1, 10]\n"
    "sync_purposes = [1, 3]\n",
    # extras after the gid, a week of hosted data; GDPR applies by default: all general
    "after_gdpr": 'extras_position = "after"\nhosted_match_ttl_days = 7\n'
    "[privacy]\ngdpr_default = true\n",
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def exchange(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcess]:
    directory = tmp_path_factory.mktemp("hosted")
    config = write_exchange_config(
        directory,
        free_port(),
        buyers=BUYER_TABLES + HOSTED_BUYERS,
        extra_exchange=PATIENT + VARIANTS[request.param],
    )
    inproc = InProcess(config, records="hm:")
    yield inproc
    inproc.close()


def b64(data: bytes, padded: bool) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return text if padded else text.rstrip("=")


ODD_VALUES = [
    "", "chocolate_chunk!", "chocolate_chunk%21", "Q29va2llIG51bWJlciAxIQ%3D%3D",
    "A", "AB", "AB=", "ABC", "ABD", "ab%2B%2F", "%41%42%43%44", "QQ", "QR", "a b",
]  # fmt: skip
hm_values = st.one_of(
    st.binary(min_size=1, max_size=24).map(lambda d: b64(d, False)),
    st.binary(min_size=1, max_size=24).map(lambda d: b64(d, True).replace("=", "%3D")),
    st.binary(min_size=1, max_size=24).map(lambda d: b64(d, True)),
    st.binary(min_size=25, max_size=40).map(lambda d: b64(d, False)),  # too long: status 3
    st.sampled_from(ODD_VALUES),
)


@st.composite
def hosted_scopes(draw: st.DrawFn) -> Scope:
    common = draw(st.integers(0, 3)) > 0
    query = draw(queries(common))
    nid = draw(st.sampled_from(HOSTED if common else HOSTED + OTHERS))
    query = re.sub(r"(?<![^&])google_nid=[^&]*", f"google_nid={nid}", query, count=1)
    pairs = query.split("&")
    if draw(st.booleans()):  # a hosted match alone, or with the cookie match
        pairs = [pair for pair in pairs if not pair.startswith("google_cm")]
    hms = [f"google_hm={draw(hm_values)}"]
    if draw(st.integers(0, 9)) == 0:
        hms.append(draw(st.sampled_from(["google_hm", "google_hm=", "google_hm=QUJD"])))
    for hm in hms:
        pairs.insert(draw(st.integers(0, len(pairs))), hm)
    headers = [("host", "127.0.0.1"), *draw(cookie_headers(common))]
    if not common and draw(st.integers(0, 9)) == 0:
        headers.append(("sec-gpc", "1"))
    if draw(st.integers(0, 4)) == 0:
        headers.append(("x-forwarded-proto", draw(st.sampled_from(["https", "http", "ftp"]))))
    return Scope(
        draw(st.sampled_from(["GET", "GET", "HEAD"])),
        "&".join(pairs),
        Headers(headers),
        draw(st.sampled_from(["http", "https"])),
        draw(st.sampled_from(["127.0.0.1:40000", "10.1.2.3:40000"])),
    )


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(hosted_scopes())
def test_both_paths_answer_count_and_store_alike(exchange: InProcess, scope: Scope) -> None:
    exchange.agree(scope)


def hosted_scope(query: str, browser_id: bytes) -> Scope:
    headers = Headers([("host", "127.0.0.1"), ("cookie", f"cm_id={format_browser_id(browser_id)}")])
    return Scope("GET", query, headers, "http", "10.1.2.3:40000")


def test_the_common_hosted_match_is_answered_directly(exchange: InProcess) -> None:
    """The direct path answers a hosted match itself (a coroutine the adapter awaits) when the
    policy allows it without signals; the record it acknowledged is stored, as the general
    path stores it."""
    browser_id = bytes(range(16))
    query = "google_nid=ad_network_xyz&google_cm&google_hm=Q29va2llIG51bWJlciAxIQ%3D%3D&p=1"
    scope = hosted_scope(query, browser_id)
    direct = exchange.route.direct
    assert direct is not None
    pending = direct(scope)
    if exchange.server.policy.settings.gdpr_default:  # type: ignore[union-attr]
        assert pending is None  # refused under SILENT: the general path answers error 1
        return
    assert inspect.isawaitable(pending)
    headers = exchange.loop.run_until_complete(pending)
    location = dict(headers)["Location"]
    assert location.startswith("http://ad.network.com/pixel?id=&p=1&google_gid=")
    assert "google_hm" not in location
    stored = exchange.loop.run_until_complete(exchange.take_records())
    key = keys.hosted_match_key(browser_id, "ad_network_xyz")
    assert [(k, v) for k, v, _ in stored] == [(key, b"Cookie number 1!")]
    answer = exchange.agree(scope)
    assert (
        dict(answer[1])["Location"].partition("google_gid=")[0]
        == location.partition("google_gid=")[0]
    )


@pytest.mark.parametrize("cm", ["", "&google_cm"])
def test_the_seed_example(exchange: InProcess, cm: str) -> None:
    """The seed's hosted match example, alone and with ``google_cm``, with an extra: both
    paths alike."""
    query = f"google_nid=hm_macros{cm}&google_hm=Q29va2llIG51bWJlciAxIQ%3D%3D&my_extra=7"
    status, headers, _ = exchange.agree(hosted_scope(query, b"\x07" * 16))
    assert status == 302
    location = dict(headers)["Location"]
    assert location.startswith("http://hm.example/s?")
    assert "google_hm" not in location  # stored: the macro places nothing


def test_generated_common_hosted_matches_are_answered_directly(exchange: InProcess) -> None:
    """Hosted matches of the common case (a hosted buyer, a valid value, extras, a cookie) are
    all answered by the direct path (when the policy allows them without signals), and alike."""
    rng = random.Random(7)
    direct = exchange.route.direct
    assert direct is not None
    refused = exchange.server.policy.settings.gdpr_default  # type: ignore[union-attr]
    for _ in range(150):
        browser_id = rng.randbytes(16)
        value = b64(rng.randbytes(rng.randint(1, 24)), rng.random() < 0.5)
        pairs = [
            f"google_nid={rng.choice(HOSTED)}",
            *(["google_cm"] if rng.random() < 0.5 else []),
            f"google_hm={value.replace('=', '%3D')}",
            *(f"e{i}={rng.randint(0, 10**6)}" for i in range(rng.randint(0, 3))),
        ]
        rng.shuffle(pairs)
        scope = hosted_scope("&".join(pairs), browser_id)
        pending = direct(scope)
        if refused:
            assert pending is None
            continue
        assert inspect.isawaitable(pending), scope.query_string
        headers = exchange.loop.run_until_complete(pending)
        assert "google_hm" not in dict(headers)["Location"]
        stored = exchange.loop.run_until_complete(exchange.take_records())
        assert [v for _, v, _ in stored] == [base64.urlsafe_b64decode(value + "==")]
        assert exchange.agree(scope)[1] == headers
        cipher = exchange.server.cipher
        gid = cipher.encrypt(browser_id, pairs_nid(pairs), cipher.current_version)
        assert (gid in dict(headers)["Location"]) == ("google_cm" in pairs)


def pairs_nid(pairs: list[str]) -> str:
    return next(p for p in pairs if p.startswith("google_nid=")).partition("=")[2]
