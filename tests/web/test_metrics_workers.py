"""``/metrics`` of every role served by ``cookiematch serve --workers 2``: whichever worker
answers a scrape, it counts every worker's requests; the exposition passes ``promtool check
metrics`` in both formats; OpenMetrics is negotiated from ``Accept``; ``[metrics] access =
"token"`` asks for the admin token."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from cookiematch.storage.guard import MAX_BACKLOG

from conftest import ServerProcess, free_port
from support.configs import (
    ADMIN_TOKEN,
    buyer_config,
    dmp_config,
    serve_argv,
    write_exchange_config,
)
from support.tools import tool

N = 60
SCRAPES = 20
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@dataclass(frozen=True)
class Role:
    name: str
    config: Callable[[Path, int], Path]
    path: str  # a hot route requested N times
    status: int
    counted: str  # a sample of the role's own families that reads N after those requests


ROLES = [
    Role("exchange", lambda d, p: write_exchange_config(d, p),
         "/pixel?google_nid=ad_network_xyz&google_cm&google_sc", 302,
         'cookiematch_pixel_outcomes_total{nid="ad_network_xyz",outcome="set_cookie"}'),
    Role("buyer", buyer_config, "/match?google_error=1", 200,
         'cookiematch_buyer_opt_out_total{outcome="nothing_known"}'),
    Role("dmp", dmp_config, "/imp?campaign=c1&site=news&creative=cr1", 200,
         'cookiematch_privacy_decisions_total{operation="store_id",reason="not_regulated"}'),
]  # fmt: skip


@pytest.fixture(scope="module", params=ROLES, ids=lambda role: role.name)
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    start_module_server: Callable[..., ServerProcess],
) -> Iterator[tuple[Role, ServerProcess]]:
    role: Role = request.param
    port = free_port()
    config = role.config(tmp_path_factory.mktemp(role.name), port)
    server = start_module_server(serve_argv(config, role.name, "--workers", "2"), port=port)
    yield role, server


def sample(text: str, series: str) -> float:
    """The value of ``series`` (name and labels, as exposed) in an exposition; 0 if absent."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return 0.0


def fresh_get(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """One request on its own connection, so that the workers share the requests."""
    return httpx.get(url, headers={"Connection": "close", **(headers or {})}, timeout=10)


def test_every_scrape_counts_every_workers_requests(served: tuple[Role, ServerProcess]) -> None:
    role, server = served
    before = fresh_get(server.url + "/metrics").text
    for _ in range(N):
        assert fresh_get(server.url + role.path).status_code == role.status
    route = role.path.partition("?")[0]
    responses = f'cookiematch_http_responses_total{{route="{route}",status="{role.status}"}}'
    timed = f'cookiematch_http_request_duration_seconds_count{{route="{route}"}}'
    for _ in range(SCRAPES):
        text = fresh_get(server.url + "/metrics").text
        assert sample(text, responses) - sample(before, responses) == N
        assert sample(text, timed) - sample(before, timed) == N
        assert sample(text, role.counted) - sample(before, role.counted) == N
    text = fresh_get(server.url + "/metrics").text
    scraped = 'cookiematch_http_responses_total{route="/metrics",status="200"}'
    assert sample(text, scraped) - sample(before, scraped) == SCRAPES + 1
    assert re.search(r'^cookiematch_build_info\{python="[\d.]+",version="[^"]+"\} 1\.0$', text,
                     re.MULTILINE)  # fmt: skip


def assert_promtool_accepts(answer: httpx.Response) -> None:
    """A text exposition that ``promtool check metrics`` accepts."""
    assert answer.headers["content-type"].startswith("text/plain")
    checked = subprocess.run(
        [tool("promtool", package="prometheus"), "check", "metrics"], input=answer.content,
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_the_exposition_passes_promtool(served: tuple[Role, ServerProcess]) -> None:
    role, server = served
    fresh_get(server.url + role.path)
    fresh_get(server.url + "/admin/v1/nothing-here")  # an unmatched admin path, counted too
    assert_promtool_accepts(fresh_get(server.url + "/metrics"))


def test_openmetrics_when_accept_asks_for_it(served: tuple[Role, ServerProcess]) -> None:
    """promtool reads only the text format; prometheus_client's strict OpenMetrics parser
    reads this one."""
    role, server = served
    fresh_get(server.url + role.path)
    response = httpx.get(server.url + "/metrics", headers={"Accept": OPENMETRICS}, timeout=10)
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["cookiematch_http_request_duration_seconds"].type == "histogram"
    assert families["cookiematch_http_responses"].type == "counter"
    assert families["cookiematch_build_info"].type == "gauge"


def test_metrics_behind_the_admin_token(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    port = free_port()
    server = start_server(serve_argv(dmp_config(tmp_path, port, "token"), "dmp"), port=port)
    refused = httpx.get(server.url + "/metrics", timeout=10)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["www-authenticate"] == "Bearer"
    allowed = httpx.get(server.url + "/metrics", headers=AUTH, timeout=10)
    assert allowed.status_code == 200 and "cookiematch_build_info" in allowed.text


def test_admin_answers_are_counted_by_route_template(served: tuple[Role, ServerProcess]) -> None:
    _, server = served
    before = fresh_get(server.url + "/metrics").text
    assert fresh_get(server.url + "/admin/v1/health").status_code == 200
    assert fresh_get(server.url + "/admin/v1/subjects/abc", headers=AUTH).status_code in (
        200, 400, 404,
    )  # fmt: skip
    assert fresh_get(server.url + "/no/such/path").status_code == 404
    text = fresh_get(server.url + "/metrics").text
    health = 'cookiematch_http_responses_total{route="/admin/v1/health",status="200"}'
    assert sample(text, health) - sample(before, health) == 1
    unmatched = 'cookiematch_http_responses_total{route="unmatched",status="404"}'
    assert sample(text, unmatched) - sample(before, unmatched) == 1
    templates = re.findall(r'route="(/admin/v1/subjects[^"]*)"', text)
    assert templates and all("abc" not in template for template in templates)


def test_metrics_on_a_listener_of_their_own(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    port, metrics_port = free_port(), free_port()
    config = dmp_config(tmp_path, port, "token", f'dmp_listen = "127.0.0.1:{metrics_port}"')
    server = start_server(serve_argv(config, "dmp", "--workers", "2"), port=port)
    metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    assert fresh_get(server.url + "/metrics", AUTH).status_code == 404  # not on the role's
    refused = fresh_get(metrics)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.headers["content-type"] == "application/problem+json"
    assert fresh_get(f"http://127.0.0.1:{metrics_port}/other", AUTH).status_code == 404
    path = "/imp?campaign=c1&site=news&creative=cr1"
    for _ in range(N):
        assert fresh_get(server.url + path).status_code == 200
    imp = 'cookiematch_http_responses_total{route="/imp",status="200"}'
    for _ in range(SCRAPES):
        assert sample(fresh_get(metrics, AUTH).text, imp) == N
    assert_promtool_accepts(fresh_get(metrics, AUTH))
    openmetrics = fresh_get(metrics, {**AUTH, "Accept": OPENMETRICS})
    assert openmetrics.text.endswith("# EOF\n")


def test_the_store_queue_and_its_bound_are_exposed(served: tuple[Role, ServerProcess]) -> None:
    _, server = served
    deadline = time.monotonic() + 5
    while True:  # sampled every second by each worker
        text = fresh_get(server.url + "/metrics").text
        if (
            sample(text, "cookiematch_store_queue_bound") == MAX_BACKLOG
            or time.monotonic() > deadline
        ):
            break
        time.sleep(0.2)
    assert sample(text, "cookiematch_store_queue_bound") == MAX_BACKLOG
    assert re.search(r"^cookiematch_store_queue_depth \d", text, re.MULTILINE)
    assert re.search(r"^cookiematch_store_batches_total \d", text, re.MULTILINE)


def test_each_workers_event_loop_lag_is_exposed(served: tuple[Role, ServerProcess]) -> None:
    """Ten probes a second in each worker (``web/loop_lag.py``), added up over the workers."""
    _, server = served
    count = "cookiematch_event_loop_lag_seconds_count"
    deadline = time.monotonic() + 5
    while True:
        text = fresh_get(server.url + "/metrics").text
        if sample(text, count) >= 20 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sample(text, count) >= 20
    every = sample(text, 'cookiematch_event_loop_lag_seconds_bucket{le="+Inf"}')
    assert every == sample(text, count)
