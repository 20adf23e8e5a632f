"""``/pixel``'s common case answered straight from the RSGI scope (``web/exchange/direct_pixel``)
against the general path (``ExchangeRoutes.pixel``): for generated match tags, cookies,
headers and buyers, both answer the same status, headers and body, and count the same
(answers, outcomes, privacy decisions, issued gids). In process through the RSGI adapter for
thousands of requests; through a real ``cookiematch serve`` process for a sample.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cookiematch.config import load_config
from cookiematch.privacy.policy import PrivacyPolicy
from cookiematch.protocol.cookies import OPT_OUT_VALUE, format_browser_id
from cookiematch.protocol.matchtag import MAX_EXTRAS_BYTES
from cookiematch.roots.exchange import ExchangeServer
from cookiematch.web.counters import LabelledCounter
from cookiematch.web.exchange import metrics
from cookiematch.web.http import Headers
from cookiematch.web.http_metrics import RESPONSES
from cookiematch.web.rsgi import RSGIAdapter

from conftest import ServerProcess, free_port
from support.configs import write_exchange_config
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
COUNTERS = [  # the monitor's events come from its background work too: ``issued`` is compared
    c
    for c in (*vars(metrics).values(), RESPONSES)
    if isinstance(c, LabelledCounter) and c is not metrics.BUYER_EVENTS
]


class Scope:
    """The attributes of granian's RSGI scope that the adapter reads."""

    def __init__(self, method: str, query: str, headers: Headers, scheme: str, client: str):
        self.proto = "http"
        self.method = method
        self.path = "/pixel"
        self.query_string = query
        self.scheme = scheme
        self.client = client
        self.headers = headers


class Proto:
    """Records the answer."""

    def __init__(self) -> None:
        self.answer: tuple[int, list[tuple[str, str]], bytes] | None = None

    def response_empty(self, status: int, headers: Any) -> None:
        self.answer = (status, list(headers), b"")

    def response_bytes(self, status: int, headers: Any, body: bytes) -> None:
        self.answer = (status, list(headers), body)


Answer = tuple[int, list[tuple[str, str]], bytes]
Effects = dict[str, Any]


class InProcess:
    """An exchange App in this process, answering through the RSGI adapter by either path."""

    def __init__(self, config: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = ExchangeServer(load_config(config))
        self.app = self.server.app
        self.adapter = RSGIAdapter(self.app)
        self.loop.run_until_complete(self.app.startup())
        self.route = self.app.routes["/pixel"]
        assert self.route.direct is not None
        self.general = dataclasses.replace(self.route, direct=None)
        self.issued: list[tuple[Any, ...]] = []
        monitor = self.server.monitor
        assert monitor is not None
        gid_issued = monitor.gid_issued

        def recorded(nid: str, browser_id: bytes, *, new_cookie: bool = False) -> None:
            self.issued.append((nid, browser_id, new_cookie))
            gid_issued(nid, browser_id, new_cookie=new_cookie)

        monitor.gid_issued = recorded  # type: ignore[method-assign]

    def close(self) -> None:
        self.loop.run_until_complete(self.app.shutdown())
        self.loop.close()

    def snapshot(self) -> Effects:
        policy = self.server.policy
        assert isinstance(policy, PrivacyPolicy)
        counts = {c.name: {labels: c.value(labels) for labels in c.labelled()} for c in COUNTERS}
        return {"counters": counts, "policy": dict(policy.counts), "issued": len(self.issued)}

    def answer(self, scope: Scope, *, direct: bool) -> tuple[Answer, Effects]:
        """The answer by the route as served (``direct``) or by the handler alone, and what
        it counted."""
        self.app.routes["/pixel"] = self.route if direct else self.general
        try:
            before = self.snapshot()
            proto = Proto()
            self.loop.run_until_complete(self.adapter(scope, proto))
            after = self.snapshot()
        finally:
            self.app.routes["/pixel"] = self.route
        assert proto.answer is not None
        return proto.answer, changes(before, after) | {"issued": self.issued[before["issued"] :]}

    def agree(self, scope: Scope) -> Answer:
        """Both paths' answers and counts, checked equal; the answer."""
        flat, flat_effects = self.answer(scope, direct=True)
        general, general_effects = self.answer(scope, direct=False)
        assert without_new_ids(flat) == without_new_ids(general)
        assert flat_effects == general_effects
        return flat


def without_new_ids(answer: Answer) -> Answer:
    """The answer with the browser ID of a Set-Cookie left out (the set-cookie hop draws a
    new one each time; neither path answers it differently)."""
    status, headers, body = answer
    kept = [
        (name, value.partition(";")[2] if name == "Set-Cookie" else value)
        for name, value in headers
    ]
    return status, kept, body


def changes(before: Effects, after: Effects) -> Effects:
    def diff(old: dict[Any, float], new: dict[Any, float]) -> dict[Any, float]:
        return {k: v - old.get(k, 0) for k, v in new.items() if v != old.get(k, 0)}

    counters = {
        name: diff(before["counters"].get(name, {}), values)
        for name, values in after["counters"].items()
    }
    return {
        "counters": {name: d for name, d in counters.items() if d},
        "policy": diff(before["policy"], after["policy"]),
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
