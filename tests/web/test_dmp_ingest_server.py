"""``POST /api/v1/partners/<p>/records`` against a real ``cookiematch serve --role dmp`` process."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from cookiematch.dmp import keys
from cookiematch.storage import connect_store
from cookiematch.storage.lease import Lease, holder_of

from conftest import ServerProcess, free_port
from support.configs import ADMIN_TOKEN, dmp_config, serve_argv

ADMIN = ADMIN_TOKEN
INGEST = "crm-ingest-token-0123456789"
AUTH = {"Authorization": f"Bearer {INGEST}"}
NOW = int(time.time())


def write_config(directory: Path, port: int) -> Path:
    return dmp_config(
        directory,
        port,
        body=f"""
[dmp.ingest]
max_batch_records = 3
max_batch_bytes = 4096

[[dmp.traits]]
name = "age"
type = "number"

[[dmp.clients]]
id = "shop"

[[dmp.partners]]
id = "crm"
sync_url = "https://crm.example/sync?r=${{CALLBACK_URL}}"
ingest_token = "{INGEST}"

[[dmp.partners]]
id = "orders"
sync_url = "https://oms.example/px/${{DMP_UID}}"
""",
    )


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's configuration directory (its store: ``dmp.db``)."""
    return tmp_path_factory.mktemp("dmp-ingest")


@pytest.fixture(scope="module")
def server(directory: Path, start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    port = free_port()
    config = write_config(directory, port)
    argv = serve_argv(config, "dmp")
    return start_module_server(argv, port=port)


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


def post(http: httpx.Client, records: object, **headers: str) -> httpx.Response:
    return http.post(
        "/api/v1/partners/crm/records",
        content=msgspec.json.encode(records),
        headers={**AUTH, "Content-Type": "application/json", **headers},
    )


def synced_browser(http: httpx.Client, partner_uid: str) -> str:
    """A browser that went through /sync and crm's callback: its DMP uid."""
    response = http.get("/sync?client=shop")
    uid = response.headers["set-cookie"].split(";")[0].partition("=")[2]
    stored = http.get(f"/callback/crm?uid={partner_uid}", headers={"Cookie": f"dmp_id={uid}"})
    assert stored.status_code == 200
    return uid


def profile(http: httpx.Client, uid: str) -> dict[str, Any]:
    response = http.get(f"/admin/v1/profiles/{uid}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ingested(http: httpx.Client) -> dict[str, float]:
    """``cookiematch_dmp_ingested_records_total`` of partner crm, by outcome, at /metrics."""
    found = re.findall(
        r'^cookiematch_dmp_ingested_records_total\{outcome="(\w+)",partner="crm"\} (\S+)$',
        http.get("/metrics").text,
        re.MULTILINE,
    )
    return {outcome: float(value) for outcome, value in found}


def test_batch_is_applied_and_counted(http: httpx.Client) -> None:
    uid = synced_browser(http, "C-1")
    before = ingested(http)
    response = post(
        http,
        [
            {"uid": "C-1", "attributes": {"age": 31}, "events": [{"name": "buy", "ts": NOW}]},
            {"uid": "C-1", "attributes": {"age": "old"}},
            {"uid": "C-unsynced", "attributes": {"tier": "gold"}},
        ],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in ("records", "accepted", "pending", "rejected")} == {
        "records": 3, "accepted": 1, "pending": 1, "rejected": 1,
    }  # fmt: skip
    assert body["rejects"] == [{"index": 1, "reason": "attributes.age: expected number"}]
    after = ingested(http)
    assert {k: after.get(k, 0) - before.get(k, 0) for k in ("accepted", "pending", "rejected")} == {
        "accepted": 1, "pending": 1, "rejected": 1,
    }  # fmt: skip
    found = profile(http, uid)
    assert found["attributes"] == {"age": 31}
    assert found["ingested_events"] == {"buy": [NOW]}


def test_ndjson_and_pending_resolved_by_the_callback(http: httpx.Client) -> None:
    lines = b'{"uid": "C-later", "attributes": {"tier": "silver"}}\n\n{"uid": "C-later", x}\n'
    response = http.post(
        "/api/v1/partners/crm/records",
        content=lines,
        headers={**AUTH, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["pending"] == 1 and response.json()["rejected"] == 1
    uid = synced_browser(http, "C-later")
    assert profile(http, uid)["attributes"] == {"tier": "silver"}


def test_idempotency_key_replays_without_applying(http: httpx.Client) -> None:
    uid = synced_browser(http, "C-2")
    first = post(http, [{"uid": "C-2", "attributes": {"age": 20}}], **{"Idempotency-Key": "k-1"})
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    post(http, [{"uid": "C-2", "attributes": {"age": 21}}])
    replay = post(http, [{"uid": "C-2", "attributes": {"age": 20}}], **{"Idempotency-Key": "k-1"})
    assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content
    assert profile(http, uid)["attributes"] == {"age": 21}  # not applied again
    other = post(http, [{"uid": "C-2"}], **{"Idempotency-Key": "k-1"})
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/api/v1/partners/crm/records", {}, 401),
        ("/api/v1/partners/crm/records", {"Authorization": "Bearer wrong-token-00000000"}, 401),
        ("/api/v1/partners/crm/records", {"Authorization": f"Bearer {ADMIN}"}, 401),
        ("/api/v1/partners/orders/records", AUTH, 403),  # no ingest_token: HTTP ingest off
        ("/api/v1/partners/nobody/records", AUTH, 404),
    ],
)
def test_auth(http: httpx.Client, path: str, headers: dict[str, str], status: int) -> None:
    response = http.post(path, content=b"[]", headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


def test_limits_and_bad_json(http: httpx.Client) -> None:
    too_many = post(http, [{"uid": f"C-{i}"} for i in range(4)])
    assert too_many.status_code == 413 and "at most 3 records" in too_many.json()["detail"]
    too_big = post(http, [{"uid": "C-1", "attributes": {"x": "y" * 5000}}])
    assert too_big.status_code == 413
    deep = b"[" * 1000 + b"]" * 1000  # 2 KB nested deeper than the decoder goes
    for body in (b"{oops", b'{"rows": []}', b'"x"', deep):
        bad = http.post("/api/v1/partners/crm/records", content=body, headers=AUTH)
        assert bad.status_code == 400, body
        assert bad.headers["content-type"] == "application/problem+json"
    assert http.get("/api/v1/partners/crm/records", headers=AUTH).status_code == 405
    slash = http.get("/api/v1/partners/crm/records/", headers={**AUTH, "Host": "evil.example"})
    assert slash.status_code == 404  # never a redirect built from the Host header


def metric(text: str, family: str, **labels: str) -> float:
    """One series of ``/metrics`` (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{family}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_funnel_reports_outcomes_across_two_workers(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """Ingestion outcomes, rejects by reason, resolved records and the S2S delivery figures
    in ``/admin/v1/funnel`` and ``/metrics``, counted by whichever of two workers took each
    request (a connection per request)."""
    port = free_port()
    server = start_server(serve_argv(write_config(tmp_path, port), "dmp", "--workers", "2"),
                          port=port)  # fmt: skip
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=server.url, timeout=5, limits=limits) as http:
        synced_browser(http, "S-1")
        for records in (
            [
                {"uid": "S-1", "attributes": {"tier": "gold", "age": 40}},
                {"uid": "S-2", "attributes": {"tier": "silver", "gone": None}},
                {"uid": "S-1", "attributes": {"age": "x"}},
            ],
            [{"uid": "S-3", "attributes": {"tier": "gold"}}, {"uid": 7}, {"uid": "bad uid"}],
        ):
            assert post(http, records).status_code == 200
        synced_browser(http, "S-2")  # its waiting record is applied
        # each worker writes its counts every second: read until both workers' are in
        deadline = time.monotonic() + 15
        while True:
            answer = http.get("/admin/v1/funnel", headers={"Authorization": f"Bearer {ADMIN}"})
            funnel = answer.json()
            counts = funnel["ingestion"]["crm"]["counts"]
            if counts["records"] == 6 and counts["resolved"] == 1:
                break
            assert time.monotonic() < deadline, funnel["ingestion"]
            time.sleep(0.2)
        exposed = http.get("/metrics").text
    crm = funnel["ingestion"]["crm"]
    assert crm["counts"] == {
        "records": 6, "accepted": 1, "pending": 2, "resolved": 1, "rejected": 3, "expired": 0,
        "values": 3,
    }  # fmt: skip
    assert crm["rejected_by_reason"] == {"attribute": 1, "malformed": 1, "uid": 1}
    assert funnel["delivery"]["crm"] == {
        "inband": None,
        "s2s": {"sent": 6, "arrived": 2, "refused": 3, "waiting": 1, "values": 3,
                "arrival_rate": 0.3333, "failed": 0, "failed_values": 0},
    }  # fmt: skip
    assert funnel["delivery"]["orders"] == {"inband": None, "s2s": None}
    for outcome, n in crm["counts"].items():
        if outcome != "values":
            family = "cookiematch_dmp_ingested_records_total"
            assert metric(exposed, family, partner="crm", outcome=outcome) == n, outcome
    for reason, n in crm["rejected_by_reason"].items():
        family = "cookiematch_dmp_ingest_rejects_total"
        assert metric(exposed, family, partner="crm", reason=reason) == n
    family = "cookiematch_dmp_delivered_values_total"
    assert metric(exposed, family, partner="crm", path="s2s") == 3


async def test_the_look_up_answers_503_while_another_process_keeps_the_engine(
    http: httpx.Client, directory: Path
) -> None:
    """The profile's traits are in the analytics engine, which one process opens at a time:
    while another holds its lease, the look-up answers 503 with Retry-After."""
    uid = synced_browser(http, "C-busy")
    assert post(http, [{"uid": "C-busy", "attributes": {"tier": "gold"}}]).status_code == 200
    store = await connect_store(f"sqlite:///{directory / 'dmp.db'}")
    lease = Lease(store, keys.ANALYTICS_LEASE_KEY, "another-process", ttl=60)
    try:
        assert await lease.claim()
        busy = await asyncio.to_thread(
            http.get, f"/admin/v1/profiles/{uid}", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert busy.status_code == 503, busy.text
        assert busy.headers["content-type"] == "application/problem+json"
        assert busy.headers["retry-after"] == "5"
        assert "another-process" in busy.json()["detail"]
    finally:
        await lease.release()
        await store.close()
    assert profile(http, uid)["attributes"] == {"tier": "gold"}  # released: the staged write


async def test_the_opt_out_page_never_waits_for_the_engine(
    http: httpx.Client, directory: Path
) -> None:
    """While another process holds the analytics engine, the browser's opt-out page answers
    from the key-value store (no engine opened, no wait), and the admin API's access report,
    which reads the engine, answers 503 with Retry-After."""
    uid = synced_browser(http, "C-page")
    assert post(http, [{"uid": "C-page", "attributes": {"tier": "gold"}}]).status_code == 200
    store = await connect_store(f"sqlite:///{directory / 'dmp.db'}")
    lease = Lease(store, keys.ANALYTICS_LEASE_KEY, "another-process", ttl=60)
    try:
        assert await lease.claim()
        page = await asyncio.to_thread(http.get, "/optout", headers={"Cookie": f"dmp_id={uid}"})
        assert page.status_code == 200, page.text
        assert "<td>partner_id</td>" in page.text  # the partner ID the store holds
        admin = await asyncio.to_thread(
            http.get, f"/admin/v1/subjects/{uid}", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert admin.status_code == 503, admin.text
        assert admin.headers["content-type"] == "application/problem+json"
        assert admin.headers["retry-after"] == "5"
        assert "another-process" in admin.json()["detail"]
        assert await holder_of(store, keys.ANALYTICS_LEASE_KEY) == "another-process"
    finally:
        await lease.release()
        await store.close()
    report = http.get(f"/admin/v1/subjects/{uid}", headers={"Authorization": f"Bearer {ADMIN}"})
    traits = [r["field"] for r in report.json()["records"] if r["kind"] == "trait"]
    assert report.status_code == 200 and traits == ["a|tier"]  # released: read from the engine
