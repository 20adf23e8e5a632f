"""The match-tag rate limit and enforcement through a real ``cookiematch serve --workers 2``:
the limit holds across the two workers within rate_limit.py's bound, a match tag over it is
answered as docs/protocol.md says (never a 500), and enforcement actions switch on and off at
the thresholds, show in the admin API and ``/metrics``, and yield to an operator."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from cookiematch.exchange.rate_limit import SYNC_SECONDS, rate_limit_key
from cookiematch.protocol.cookies import format_browser_id
from cookiematch.storage import open_store

from conftest import ServerProcess, free_port
from support.configs import ADMIN_TOKEN, serve_argv, write_exchange_config

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LIMIT = 20.0
SECONDS = 6.0
WORKERS = 2
RULES = (
    "enforcement_interval_seconds = 1\n"
    "enforcement = { min_match_tags = 5, frequency_cap_violation_rate = 0.2,"
    ' on_frequency_cap_violations = ["alert", "throttle", "suspend_pixel_matching"] }'
)
BUYERS = f"""
[[exchange.buyers]]
nid = "limited"
redirect_url = "http://limited.example/m?id="
max_match_tags_per_second = {LIMIT}

[[exchange.buyers]]
nid = "ad_network_xyz"
redirect_url = "http://ad.network.com/pixel?id="

[[exchange.buyers]]
nid = "lenient"
redirect_url = "http://lenient.example/m?id="

[exchange.buyers.enforcement]  # its own rules
min_match_tags = 5
frequency_cap_violation_rate = 0.2
on_frequency_cap_violations = ["alert"]
"""


@pytest.fixture(scope="module")
def exchange(
    tmp_path_factory: pytest.TempPathFactory,
    start_module_server: Callable[..., ServerProcess],
) -> Iterator[tuple[str, str]]:
    directory = tmp_path_factory.mktemp("limits")
    port = free_port()
    config = write_exchange_config(
        directory, port, extra_exchange=RULES, buyers=BUYERS, user_lists=""
    )
    start_module_server(serve_argv(config, "exchange", "--workers", str(WORKERS)), port=port)
    yield f"http://127.0.0.1:{port}", f"sqlite:///{directory / 'exchange.db'}"


def a_cookie() -> str:
    return f"cm_id={format_browser_id(os.urandom(16))}"


def google_params(response: httpx.Response) -> dict[str, str]:
    query = urlsplit(response.headers["location"]).query
    return {k: v for k, v in parse_qsl(query, keep_blank_values=True) if k.startswith("google_")}


async def offer(base: str, store_url: str, nid: str, seconds: float) -> Offered:
    """Match tags for ``nid`` as fast as 8 clients can, each on a new connection (so both
    workers take some), for ``seconds``; meanwhile, the highest demand each worker published
    (read every sync interval: one read could fall where a loaded machine stalled the
    clients, and a worker rightly published that it saw nothing)."""
    counts = {"admitted": 0, "limited": 0}
    started = time.monotonic()

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            while time.monotonic() - started < seconds:
                response = await http.get(
                    f"/pixel?google_nid={nid}&google_cm&google_ula=1",
                    headers={"Cookie": a_cookie(), "Connection": "close"},
                )
                assert response.status_code == 302, response.text
                params = google_params(response)
                assert response.headers["location"].startswith(f"http://{nid}.example/m?id=")
                if "google_gid" in params:
                    counts["admitted"] += 1
                else:
                    assert params == {"google_ula": "1,10"}  # documented: nothing done
                    counts["limited"] += 1

    async def demands() -> dict[str, float]:
        highest: dict[str, float] = {}
        store = open_store(store_url)
        try:
            while time.monotonic() - started < seconds:
                await asyncio.sleep(SYNC_SECONDS)
                for worker, raw in (await store.hgetall(rate_limit_key(nid))).items():
                    highest[worker] = max(highest.get(worker, 0.0), float(raw))
        finally:
            await store.close()
        return highest

    *_, published = await asyncio.gather(*(client() for _ in range(8)), demands())
    taken = time.monotonic() - started
    return Offered(counts["admitted"], counts["limited"], taken, published)


@dataclass(frozen=True)
class Offered:
    admitted: int
    limited: int
    seconds: float
    demands: dict[str, float]  # worker -> the most match tags per second it published


def test_the_limit_holds_across_two_workers(exchange: tuple[str, str]) -> None:
    base, store_url = exchange
    got = asyncio.run(offer(base, store_url, "limited", SECONDS))
    # rate_limit.py's bound from a cold start under load: R*T + 3*n*R*S + n
    bound = LIMIT * got.seconds + 3 * WORKERS * LIMIT * SYNC_SECONDS + WORKERS
    assert got.admitted <= bound, got
    assert got.admitted >= LIMIT * got.seconds / 2, got  # the limit, not much less
    assert got.limited > got.admitted, got  # the offer was well over the limit
    assert len(got.demands) == WORKERS, got  # both workers took match tags...
    assert all(demand > 0 for demand in got.demands.values()), got  # ...and shared
    with httpx.Client(base_url=base, headers=AUTH) as http:
        counted = (got.admitted, got.limited)
        stats = poll_stats(
            http, "limited", lambda s: (s["match_tags"], s["match_tags_limited"]) == counted
        )
        metrics = http.get("/metrics").text
    assert stats["enforcement"]["max_match_tags_per_second"] == LIMIT
    assert stats["match_tags"] == got.admitted  # every worker flushes its counts each second
    assert stats["match_tags_limited"] == got.limited
    outcome = f'cookiematch_pixel_outcomes_total{{nid="limited",outcome="limited"}} {got.limited}'
    assert outcome in metrics


def eventually(check: Callable[[], bool]) -> bool:
    """Whether ``check`` holds within 30 s (workers apply a state within a second or so)."""
    deadline = time.monotonic() + 30
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def poll_stats(
    http: httpx.Client, nid: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The buyer's stats once ``done`` holds (or after 30 s, for the assertion to show)."""
    deadline = time.monotonic() + 30
    while True:
        stats: dict[str, Any] = http.get(f"/admin/v1/buyers/{nid}/stats").json()
        if done(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def poll(http: httpx.Client, nid: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The buyer's ``enforcement`` once ``done`` holds (the evaluation runs every second)."""
    found: dict[str, Any] = poll_stats(http, nid, lambda s: done(s["enforcement"]))["enforcement"]
    return found


def match_tags(http: httpx.Client, nid: str, cookies: list[str]) -> list[dict[str, str]]:
    found = []
    for cookie in cookies:
        response = http.get(f"/pixel?google_nid={nid}&google_cm", headers={"Cookie": cookie})
        assert response.status_code == 302
        found.append(google_params(response))
    return found


def test_violations_switch_actions_on_and_an_operator_overrides(
    exchange: tuple[str, str],
) -> None:
    base, _ = exchange
    everything = ["alert", "throttle", "suspend_pixel_matching"]
    with httpx.Client(base_url=base, headers=AUTH) as http:
        assert http.get("/admin/v1/buyers/ad_network_xyz/enforcement").json()["actions"] == []
        match_tags(http, "ad_network_xyz", [a_cookie()] * 10)  # 9 violations of 10
        view = poll(http, "ad_network_xyz", lambda v: v["actions"] == everything)
        assert view["actions"] == everything and view["override"] is False
        assert "frequency-capping violations 9/10" in view["reasons"][0]
        assert view["max_match_tags_per_second"] == 0.5  # half of max(1/s, what it sent)
        metrics = http.get("/metrics").text
        for action in everything:
            gauge = f'cookiematch_buyer_enforcement{{action="{action}",nid="ad_network_xyz"}} 1.0'
            assert gauge in metrics

        # the workers apply the throttle (each reads the states every second): of a burst,
        # no more than a bucket of one match tag per worker is admitted
        def throttled() -> bool:
            answers = match_tags(http, "ad_network_xyz", [a_cookie() for _ in range(8)])
            return sum("google_gid" in a for a in answers) <= WORKERS

        assert eventually(throttled)

        pardoned = http.put(
            "/admin/v1/buyers/ad_network_xyz/enforcement",
            json={"actions": [], "reason": "checked with the buyer"},
        ).json()
        assert pardoned["actions"] == [] and pardoned["override"] is True
        assert pardoned["max_match_tags_per_second"] is None

        # the override outlives evaluations and reaches every worker
        def admitted() -> bool:
            answers = match_tags(http, "ad_network_xyz", [a_cookie() for _ in range(8)])
            return all("google_gid" in a for a in answers)

        assert eventually(admitted)
        assert poll(http, "ad_network_xyz", lambda v: True) == pardoned

        bad = http.put("/admin/v1/buyers/ad_network_xyz/enforcement", json={"actions": ["ban"]})
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["errors"][0]["field"].startswith("actions")

        assert http.delete("/admin/v1/buyers/ad_network_xyz/enforcement").status_code == 200
        view = poll(http, "ad_network_xyz", lambda v: v["actions"] == everything)
        assert view["actions"] == everything and view["override"] is False  # the rules again


def test_actions_switch_off_below_the_threshold(exchange: tuple[str, str]) -> None:
    base, _ = exchange
    with httpx.Client(base_url=base, headers=AUTH) as http:
        match_tags(http, "lenient", [a_cookie()] * 5)  # 4 violations of 5: its own rules
        view = poll(http, "lenient", lambda v: v["actions"] == ["alert"])
        assert view["actions"] == ["alert"] and view["since"] is not None
        match_tags(http, "lenient", [a_cookie() for _ in range(20)])  # 4 of 25: not above 0.2
        view = poll(http, "lenient", lambda v: v["actions"] == [])
        assert view == {
            "actions": [],
            "since": None,
            "reasons": [],
            "override": False,
            "max_match_tags_per_second": None,
        }
        metrics = http.get("/metrics").text
        assert 'cookiematch_buyer_enforcement{action="alert",nid="lenient"} 0.0' in metrics
