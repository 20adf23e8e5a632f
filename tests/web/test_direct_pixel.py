"""``/pixel``'s common case answered straight from the RSGI scope (``web/exchange/direct_pixel``)
against the general path (``ExchangeRoutes.pixel``): for generated match tags, cookies,
headers and buyers, both answer the same status, headers and body, and count the same
(answers, outcomes, privacy decisions, issued gids). In process through the RSGI adapter for
thousands of requests; through a real ``cookiematch serve`` process for a sample.
"""

from __future__ import annotations

import http.client
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cookiematch.protocol.cookies import OPT_OUT_VALUE, format_browser_id
from cookiematch.protocol.matchtag import MAX_EXTRAS_BYTES
from cookiematch.web.exchange.direct_pixel import MAX_TAG_CHARS, MAX_TAGS
from cookiematch.web.http import Headers

from conftest import ServerProcess, free_port
from support.configs import write_exchange_config
from support.direct_paths import Answer, InProcess, Scope
from support.match_tags import (
    BUYER_TABLES,
    BUYERS,
    ODD,
    cookie_headers,
    encoded,
    queries,
    vector_cases,
)

VARIANTS = {
    "default": "",
    # extras after the gid; GDPR applies by default: every match of the general path
    "after_gdpr": 'extras_position = "after"\nset_cookie_by_default = true\n'
    "[privacy]\ngdpr_default = true\n",
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def exchange(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcess]:
    directory = tmp_path_factory.mktemp("direct")
    config = write_exchange_config(
        directory, free_port(), buyers=BUYER_TABLES, extra_exchange=VARIANTS[request.param]
    )
    inproc = InProcess(config)
    yield inproc
    inproc.close()


# --- generated requests ---------------------------------------------------------------------


@st.composite
def scopes(draw: st.DrawFn) -> Scope:
    common = draw(st.booleans())
    headers = [("host", "127.0.0.1"), *draw(cookie_headers(common))]
    if not common and draw(st.integers(0, 9)) == 0:
        headers.append(("sec-gpc", draw(st.sampled_from(["1", "0"]))))
    if draw(st.integers(0, 4)) == 0:
        headers.append(("x-forwarded-proto", draw(st.sampled_from(["https", "http", "ftp"]))))
    return Scope(
        draw(st.sampled_from(["GET", "GET", "HEAD"])),
        draw(queries(common)),
        Headers(headers),
        draw(st.sampled_from(["http", "https"])),
        draw(st.sampled_from(["127.0.0.1:40000", "10.1.2.3:40000"])),
    )


@settings(
    max_examples=2500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scopes())
def test_both_paths_answer_and_count_alike(exchange: InProcess, scope: Scope) -> None:
    exchange.agree(scope)


def common_scope(query: str, cookie: str, scheme: str = "http") -> Scope:
    headers = Headers([("host", "127.0.0.1"), ("cookie", cookie)])
    return Scope("GET", query, headers, scheme, "10.1.2.3:40000")


def test_the_common_case_is_answered_directly(exchange: InProcess) -> None:
    """The direct path answers the common case itself (in the default variant): the general
    path, disabled for the test, is not reached."""
    browser = format_browser_id(bytes(range(16)))
    scope = common_scope("google_nid=ad_network_xyz&google_cm&p1=v1", f"cm_id={browser}")
    direct = exchange.route.direct
    assert direct is not None
    headers = direct(scope)
    gdpr_default = exchange.server.policy.settings.gdpr_default  # type: ignore[union-attr]
    if gdpr_default:
        assert headers is None  # refused under SILENT: the general path answers error 1
        return
    assert headers is not None
    location = dict(headers)["Location"]
    assert location.startswith("http://ad.network.com/pixel?id=&p1=v1&google_gid=")
    assert exchange.agree(scope)[1] == headers


# --- through a real server process ----------------------------------------------------------


def sample(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (query, Cookie) pairs: mostly the common case, with odd extras and the rest."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        browser = format_browser_id(rng.randbytes(16))
        nid = rng.choice([*BUYERS, "limited", "unknown"])
        extras = [
            f"{encoded(''.join(rng.choices(ODD, k=rng.randint(1, 8))))}="
            f"{encoded(''.join(rng.choices(ODD, k=rng.randint(0, 12))))}"
            for _ in range(rng.randint(0, 4))
        ]
        if i % 7 == 0:
            extras.append("big=" + "v" * rng.randint(MAX_EXTRAS_BYTES - 20, MAX_EXTRAS_BYTES))
        if i % 11 == 0:
            extras.append(rng.choice(["google_ula=12345", "gdpr=1", "google_tc=1", "a=%zz"]))
        query = "&".join([f"google_nid={nid}", "google_cm", *extras])
        cookie = rng.choice([f"cm_id={browser}"] * 4 + ["cm_id=bad", "", f"cm_id={OPT_OUT_VALUE}"])
        out.append((query, cookie))
    return out


def fetch(port: int, query: str, cookie: str) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Cookie": cookie} if cookie else {}
        connection.request("GET", f"/pixel?{query}", headers=headers)
        response = connection.getresponse()
        kept = {"location", "cache-control", "content-type", "set-cookie"}
        pairs = [(n.lower(), v) for n, v in response.getheaders() if n.lower() in kept]
        return response.status, sorted(pairs), response.read()
    finally:
        connection.close()


def test_a_real_server_answers_as_the_general_path(
    exchange: InProcess,
    tmp_path: Path,
    start_server: Callable[..., ServerProcess],
) -> None:
    """The real server (RSGI, the direct path on) answers a sample byte for byte as the general
    path does in this process (same keys, same buyers)."""
    port = free_port()
    variant = "default" if not exchange.server.policy.settings.gdpr_default else "after_gdpr"  # type: ignore[union-attr]
    config = write_exchange_config(
        tmp_path, port, buyers=BUYER_TABLES, extra_exchange=VARIANTS[variant]
    )
    argv = [sys.executable, "-m", "cookiematch", "serve", "--config", str(config)]
    start_server(argv=argv, port=port)
    for query, cookie in sample(80, seed=19):
        headers = [("host", "127.0.0.1")] + ([("cookie", cookie)] if cookie else [])
        scope = Scope("GET", query, Headers(headers), "http", "10.1.2.3:40000")
        status, pairs, body = exchange.answer(scope, direct=False)[0]
        expected = (status, sorted((n.lower(), v) for n, v in pairs), body)
        if any(name == "set-cookie" for name, _ in expected[1]):
            continue  # the set-cookie hop: a new random browser ID each time
        assert fetch(port, query, cookie) == expected, query


def test_the_seed_vectors_through_both_paths(exchange: InProcess) -> None:
    """Each seed vector's match tag (its nid renamed to its buyer's), from a browser with a
    cookie: both paths answer alike and, in the default variant, the direct path answers it
    with the vector's URL (its gid being this browser's)."""
    cases = vector_cases()
    assert len(cases) >= 6
    browser_id = bytes(range(16))
    direct = exchange.route.direct
    assert direct is not None
    default = not exchange.server.policy.settings.gdpr_default  # type: ignore[union-attr]
    for i, case in enumerate(cases):
        scheme, _, rest = case["match_tag"].partition("://")
        query = rest.partition("?")[2].replace(f"google_nid={case['expected_tag']['nid']}", "")
        headers = Headers([("cookie", f"cm_id={format_browser_id(browser_id)}")])
        scope = Scope("GET", f"google_nid=v{i}&{query}", headers, scheme, "10.1.2.3:40000")
        status, pairs, _ = exchange.agree(scope)
        if not default:
            continue
        assert direct(scope) is not None, case["name"]
        gid = exchange.server.cipher.encrypt(browser_id, f"v{i}", case["response"]["cver"])
        expected = case["expected"].replace(case["response"]["gid"], gid)
        location = dict(pairs)["Location"]
        assert status == 302
        if case["compare"] == "exact":
            assert location == expected, case["name"]
        else:
            assert sorted(location.partition("?")[2].split("&")) == sorted(
                expected.partition("?")[2].split("&")
            )


def test_a_query_read_before_is_answered_alike_for_every_browser(exchange: InProcess) -> None:
    """A match tag's query is read once and its reading remembered (``MAX_TAGS`` of them,
    then all forgotten): the same query from other browsers, and queries past the bound,
    are still answered as the general path answers them."""
    query = "google_nid=ad_network_xyz&google_cm&p1=v1&p%202=a%26b"
    for i in range(3):
        cookie = f"cm_id={format_browser_id(bytes([i]) * 16)}"
        exchange.agree(common_scope(query, cookie))
    cookie = f"cm_id={format_browser_id(bytes(range(16)))}"
    for i in range(MAX_TAGS + 2):
        scope = common_scope(f"google_nid=ad_network_xyz&google_cm&n={i}", cookie)
        direct = exchange.route.direct
        assert direct is not None
        if i % 1000 == 0 or i > MAX_TAGS:
            exchange.agree(scope)
        else:
            direct(scope)
    exchange.agree(common_scope(query, cookie))
    long_query = f"google_nid=ad_network_xyz&google_cm&p1={'v' * MAX_TAG_CHARS}"
    for _ in range(2):  # too long to remember: read each time, answered alike
        exchange.agree(common_scope(long_query, cookie))
