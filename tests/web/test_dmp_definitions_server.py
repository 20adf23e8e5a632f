"""Partners, segments and destinations managed through the admin API of a real
``cookiematch serve --role dmp --workers 2``: validated as at load, served by every worker
within seconds, secrets masked, kept across a restart."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cookiematch.secret import MASK

from conftest import ServerProcess, free_port, running_server
from support.configs import ADMIN_TOKEN, dmp_config, serve_argv

TOKEN = ADMIN_TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INGEST_TOKEN = "crm-ingest-token-0123456789"
PROBLEM = "application/problem+json"
CRM = {
    "sync_url": "https://crm.example/sync?r=${CALLBACK_URL}",
    "priority": 5,
    "ingest_token": INGEST_TOKEN,
}
IN_A_ROW = 12  # answers in a row that agree: both workers answered among them


def write_config(directory: Path, port: int) -> Path:
    return dmp_config(
        directory,
        port,
        body=f"""\
export_directory = "{directory}/exports"

[[dmp.clients]]
id = "shop"

[[dmp.partners]]
id = "analytics"
sync_url = "https://analytics.example/sync?redir=${{CALLBACK_URL}}"

[[dmp.partners]]
id = "mail"
sync_url = "https://mail.example/sync?redir=${{CALLBACK_URL}}"

[[dmp.destinations]]
id = "feed"
kind = "file"
partner = "analytics"
path = "{directory}/feed.csv"
""",
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, free_port())


def port_of(config: Path) -> int:
    text = config.read_text()
    return int(text.split('listen = "127.0.0.1:')[1].split('"')[0])


@pytest.fixture
def server(config: Path) -> Iterator[ServerProcess]:
    argv = serve_argv(config, "dmp", "--workers", "2")
    with running_server(argv, port=port_of(config)) as started:
        yield started


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


def steadily(check: Callable[[], bool], server: ServerProcess, timeout: float = 20) -> None:
    """Poll until ``check`` holds ``IN_A_ROW`` times in a row (requests reach both workers)."""
    deadline, streak = time.monotonic() + timeout, 0
    while streak < IN_A_ROW:
        assert time.monotonic() < deadline, server.output()
        streak = streak + 1 if check() else 0
        if not streak:
            time.sleep(0.05)


def synced_by(http: httpx.Client, partner: str) -> bool:
    """Does a new browser's /sync carry ``partner``'s pixel?"""
    answer = http.get("/sync?client=shop")
    assert answer.status_code == 200, answer.text
    return any(f"//{partner}.example/" in p for p in answer.json()["pixels"])


def put(http: httpx.Client, path: str, body: object) -> httpx.Response:
    return http.put(f"/admin/v1/{path}", json=body, headers=AUTH)


def ingest(http: httpx.Client, token: str) -> int:
    answer = http.post(
        "/api/v1/partners/crm/records",
        json=[{"uid": "C-1", "attributes": {"tier": "gold"}}],
        headers={"Authorization": f"Bearer {token}"},
    )
    return answer.status_code


def entry(http: httpx.Client, path: str) -> dict[str, Any]:
    answer = http.get(f"/admin/v1/{path}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_partner_put_is_synced_by_every_worker_its_secret_masked_and_kept(
    http: httpx.Client, server: ServerProcess
) -> None:
    assert not synced_by(http, "crm")
    created = put(http, "partners/crm", CRM)
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == "/admin/v1/partners/crm"
    assert created.json()["ingest_token"] == MASK and created.json()["id"] == "crm"
    steadily(lambda: synced_by(http, "crm"), server)
    steadily(lambda: ingest(http, INGEST_TOKEN) == 200, server)  # its token, in every worker

    shown = entry(http, "partners/crm")
    assert shown["ingest_token"] == MASK and shown["pull_token"] is None
    assert INGEST_TOKEN not in http.get("/admin/v1/partners", headers=AUTH).text
    replaced = put(http, "partners/crm", {**shown, "priority": 7})  # MASK sent back
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["priority"] == 7
    steadily(lambda: entry(http, "partners/crm")["priority"] == 7, server)
    steadily(lambda: ingest(http, INGEST_TOKEN) == 200, server)  # the stored token was kept
    assert ingest(http, MASK) == 401


def test_an_invalid_put_is_refused_naming_the_key(config: Path, http: httpx.Client) -> None:
    bad_template = put(http, "partners/crm", {**CRM, "sync_url": "https://crm.example/sync"})
    assert bad_template.status_code == 422
    assert bad_template.headers["content-type"] == PROBLEM
    assert [e["field"] for e in bad_template.json()["errors"]] == ["sync_url"]
    unknown = put(http, "partners/crm", {**CRM, "colour": "red", "ttl_days": 0})
    assert unknown.status_code == 422
    assert {e["field"] for e in unknown.json()["errors"]} == {"colour", "ttl_days"}
    short = put(http, "partners/crm", {**CRM, "ingest_token": "short"})
    assert [e["field"] for e in short.json()["errors"]] == ["ingest_token"]
    no_secret = put(http, "partners/crm", {**CRM, "ingest_token": MASK})  # nothing to keep
    assert [e["field"] for e in no_secret.json()["errors"]] == ["ingest_token"]
    other_id = put(http, "partners/crm", {**CRM, "id": "other"})
    assert [e["field"] for e in other_id.json()["errors"]] == ["id"]
    rule = put(http, "segments/vip", {"rule": {"attribute": "tier", "op": "like", "value": 1}})
    assert rule.status_code == 422 and rule.json()["errors"][0]["field"].startswith("rule")
    dest = put(http, "destinations/out", {"kind": "file", "path": "/tmp/x", "partner": "nobody"})
    assert [e["field"] for e in dest.json()["errors"]] == ["path"]  # outside export_directory
    exports = f"{config.parent}/exports"
    for path in (f"{exports}/../x.csv", f"{exports}", "x.csv", f"{exports}/./x.csv"):
        climbs = put(http, "destinations/out", {"kind": "file", "path": path})
        assert climbs.status_code == 422, path
        assert [e["field"] for e in climbs.json()["errors"]] == ["path"], path
    inside = {"kind": "file", "path": f"{exports}/x.csv", "partner": "nobody"}
    dest = put(http, "destinations/out", inside)
    assert [e["field"] for e in dest.json()["errors"]] == ["partner"]
    not_json = http.put("/admin/v1/partners/crm", content=b"{", headers=AUTH)
    assert not_json.status_code == 400 and not_json.headers["content-type"] == PROBLEM
    assert http.get("/admin/v1/partners/crm", headers=AUTH).status_code == 404


def test_segments_and_destinations_change_without_a_restart(
    config: Path, http: httpx.Client, server: ServerProcess
) -> None:
    rule = {"attribute": "tier", "op": "eq", "value": "gold"}
    assert put(http, "segments/vip", {"rule": rule}).status_code == 201

    def listed() -> bool:
        segments = entry(http, "segments")["segments"]
        return [s["id"] for s in segments] == ["vip"]

    steadily(listed, server)
    assert entry(http, "segments/vip")["rule"] == rule
    exports = f"{config.parent}/exports"
    dest = {"kind": "file", "path": f"{exports}/{{segment}}.csv", "segments": ["vip"]}
    assert put(http, "destinations/vipfile", dest).status_code == 201
    assert entry(http, "destinations/vipfile")["export_interval_minutes"] == 0
    in_use = http.delete("/admin/v1/segments/vip", headers=AUTH)  # vipfile names it
    assert in_use.status_code == 409 and in_use.headers["content-type"] == PROBLEM
    assert in_use.json()["errors"][0]["field"] == "destinations[1].segments[0]"
    assert http.delete("/admin/v1/destinations/vipfile", headers=AUTH).status_code == 204
    assert http.delete("/admin/v1/segments/vip", headers=AUTH).status_code == 204
    steadily(lambda: entry(http, "segments")["segments"] == [], server)


def test_delete_removes_a_partner_everywhere_and_changes_survive_a_restart(
    config: Path, http: httpx.Client, server: ServerProcess
) -> None:
    assert put(http, "partners/crm", CRM).status_code == 201
    in_use = http.delete("/admin/v1/partners/analytics", headers=AUTH)
    assert in_use.status_code == 409  # the destination feed exports its IDs
    assert in_use.json()["errors"][0]["field"] == "destinations[0].partner"
    assert http.delete("/admin/v1/partners/mail", headers=AUTH).status_code == 204
    assert http.get("/admin/v1/partners/mail", headers=AUTH).status_code == 404
    assert http.delete("/admin/v1/partners/mail", headers=AUTH).status_code == 404
    steadily(lambda: not synced_by(http, "mail") and synced_by(http, "crm"), server)

    assert server.terminate() == 0
    argv = serve_argv(config, "dmp", "--workers", "2")
    with (
        running_server(argv, port=port_of(config)) as again,
        httpx.Client(base_url=again.url, timeout=5) as after,
    ):
        ids = [p["id"] for p in entry(after, "partners")["partners"]]
        assert ids == ["analytics", "crm"]  # the file's, then the stored ones
        steadily(lambda: not synced_by(after, "mail") and synced_by(after, "crm"), again)
        steadily(lambda: ingest(after, INGEST_TOKEN) == 200, again)
