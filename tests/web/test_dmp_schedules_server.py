"""A real ``cookiematch serve --role dmp --workers 2`` pulls partners and exports segments on
their schedules, one worker at a time, and runs them when the admin API asks (202, then the
report; 409 while one runs)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from cookiematch.dmp.events import EventLog, EventType, ImpressionEvent
from cookiematch.storage import connect_store

from conftest import ServerProcess, free_port, running_server
from support.configs import ADMIN_TOKEN, dmp_config, serve_argv

TOKEN = ADMIN_TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PULL_TOKEN = "pull-token-0123456789"
PAGE = {"records": [{"uid": "A-1", "attributes": {"n": 1}}, {"uid": "A-2"}], "next_cursor": None}
INTERVAL_MINUTES = 0.03  # 1.8 s
SEEN = 7


class PartnerStub:
    """A partner's data endpoint: the same page each time, counted; ``gate`` holds answers."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.requests: list[float] = []  # when each GET arrived (time.monotonic)
        self.in_flight = 0
        self.max_in_flight = 0
        self.authorized = True
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with stub._lock:
                    stub.requests.append(time.monotonic())
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                    stub.authorized &= self.headers.get("Authorization") == f"Bearer {PULL_TOKEN}"
                try:
                    stub.gate.wait(30)
                    time.sleep(stub.delay)
                    body = msgspec.json.encode(PAGE)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    with stub._lock:
                        stub.in_flight -= 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/records"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PartnerStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def write_config(directory: Path, port: int, extra: str) -> Path:
    return dmp_config(directory, port, body=extra)


def partner(url: str, minutes: float) -> str:
    return f"""
[[dmp.partners]]
id = "crm"
sync_url = "https://crm.example/sync?r=${{CALLBACK_URL}}"
pull_url = "{url}"
pull_token = "{PULL_TOKEN}"
pull_interval_minutes = {minutes}
"""


@pytest.fixture
def stub() -> Iterator[PartnerStub]:
    with PartnerStub(delay=0.3) as started:
        yield started


def until(condition: Callable[[], bool], server: ServerProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)


def get(http: httpx.Client, path: str) -> Any:
    answer = http.get(path, headers=AUTH)
    assert answer.status_code == 200, answer.text
    return answer.json()


def finished(http: httpx.Client, path: str) -> Callable[[], bool]:
    def done() -> bool:
        run = get(http, path)["last_run"]
        return run is not None and run["finished_at"] is not None

    return done


def test_a_partner_is_pulled_every_interval_by_one_worker_at_a_time(
    tmp_path: Path, stub: PartnerStub
) -> None:
    port = free_port()
    config = write_config(tmp_path, port, partner(stub.url, INTERVAL_MINUTES))
    with running_server(serve_argv(config, "dmp", "--workers", "2"), port=port) as server:
        until(lambda: len(stub.requests) >= 4, server)
        assert server.terminate() == 0
    output = server.output()
    runs = output.count("scheduled pull of partner 'crm': pages=1 records=2")
    # one page per run, never two runs at once, and a run only once the interval has passed
    # since the one before (whichever worker ran it): two workers are one runner
    assert runs == len(stub.requests) >= 4, output
    assert stub.max_in_flight == 1 and stub.authorized
    interval = INTERVAL_MINUTES * 60
    gaps = [b - a for a, b in zip(stub.requests, stub.requests[1:], strict=False)]
    assert all(gap > interval / 2 for gap in gaps), gaps  # a second runner: about 0 apart
    assert "Traceback" not in output and "failed" not in output, output


def test_a_pull_asked_through_the_admin_api_runs_once_and_reports(
    tmp_path: Path, stub: PartnerStub
) -> None:
    port = free_port()
    config = write_config(tmp_path, port, partner(stub.url, 60))
    argv = serve_argv(config, "dmp", "--workers", "2")
    with running_server(argv, port=port) as server, httpx.Client(base_url=server.url) as http:
        until(finished(http, "/admin/v1/pulls/crm"), server)  # the first scheduled run
        first = get(http, "/admin/v1/pulls/crm")
        assert first["job"] == "pull:crm" and first["interval_seconds"] == 3600
        assert first["next_at"] == pytest.approx(first["last_run"]["started_at"] + 3600)
        assert get(http, "/admin/v1/pulls")["pulls"][0]["job"] == "pull:crm"

        stub.gate.clear()  # the next pull waits for the partner
        started = http.post("/admin/v1/pulls/crm/run", headers=AUTH)
        assert started.status_code == 202, started.text
        assert started.headers["Location"] == "/admin/v1/pulls/crm"
        assert started.json()["report"] == "/admin/v1/pulls/crm"
        until(lambda: stub.in_flight == 1, server)
        for _ in range(4):  # whichever worker answers
            busy = http.post("/admin/v1/pulls/crm/run", headers=AUTH)
            assert busy.status_code == 409, busy.text
            assert busy.headers["content-type"] == "application/problem+json"
        running = get(http, "/admin/v1/pulls/crm")
        assert running["holder"] is not None and running["last_run"]["finished_at"] is None
        stub.gate.set()
        until(finished(http, "/admin/v1/pulls/crm"), server)
        report = get(http, "/admin/v1/pulls/crm")
        run = report["last_run"]
        assert run["ok"] is True and run["error"] is None and report["holder"] is None
        assert run["counts"]["pages"] == 1 and run["counts"]["records"] == 2
        assert run["counts"]["pending"] == 2  # nobody synced yet
        assert report["next_at"] == pytest.approx(run["started_at"] + 3600)
        assert len(stub.requests) == 2  # the scheduled run and the one asked for

        missing = http.post("/admin/v1/pulls/nobody/run", headers=AUTH)
        assert missing.status_code == 404 and missing.headers["content-type"].startswith(
            "application/problem+json"
        )
        assert http.post("/admin/v1/pulls/crm/run").status_code == 401


async def store_impressions(url: str) -> None:
    """Members for the ``seen`` segment, written before the server starts."""
    store = await connect_store(url)
    try:
        events = EventLog(store, max_per_profile=10, ttl_seconds=86400)
        for i in range(SEEN):
            await events.record(f"b{i:03d}", ImpressionEvent(EventType.IMP, "spring"), time.time())
    finally:
        await store.close()


def test_a_segment_is_exported_on_its_destination_schedule(tmp_path: Path) -> None:
    asyncio.run(store_impressions(f"sqlite:///{tmp_path / 'dmp.db'}"))
    port = free_port()
    out = tmp_path / "out"
    config = write_config(
        tmp_path,
        port,
        f"""
recompute_interval_minutes = 30

[[dmp.segments]]
id = "seen"
rule = {{ exposed = "imp", campaign = "spring" }}

[[dmp.destinations]]
id = "files"
kind = "file"
path = "{out}/{{segment}}-{{time}}-{{mode}}.csv"
segments = ["seen"]
export_interval_minutes = {INTERVAL_MINUTES}
""",
    )
    argv = serve_argv(config, "dmp", "--workers", "2")
    with running_server(argv, port=port) as server, httpx.Client(base_url=server.url) as http:

        def exported() -> bool:
            run = get(http, "/admin/v1/exports/seen/files")["last_run"]
            return run is not None and run["ok"] is True and run["counts"]["members"] == SEEN

        until(exported, server)  # the first export may run before the first recompute
        listing = get(http, "/admin/v1/exports")["exports"]
        assert [e["job"] for e in listing] == ["export:seen:files"]
        assert listing[0]["interval_seconds"] == pytest.approx(INTERVAL_MINUTES * 60)
        segment = get(http, "/admin/v1/segments/seen")
        assert segment["exports"]["files"]["members"] == SEEN
        assert segment["rule"] == {"exposed": "imp", "campaign": "spring"}
        unknown = http.post("/admin/v1/exports/seen/nowhere/run", headers=AUTH)
        assert unknown.status_code == 404
        assert server.terminate() == 0
    added = set()
    for path in out.glob("seen-*.csv"):
        added |= {line.split(",")[1] for line in path.read_text().split() if line[:4] == "add,"}
    assert added == {f"b{i:03d}" for i in range(SEEN)}
