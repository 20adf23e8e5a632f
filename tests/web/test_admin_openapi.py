"""Each role's admin API against its own OpenAPI 3.1 document (``web/openapi.py``), on real
``cookiematch serve`` processes: the document is served without a token, is valid OpenAPI
(``openapi-spec-validator``), names exactly the routes served, and schemathesis finds no 5xx
and no answer (status, content type, headers, body) outside it. The DMP's document holds its
partners' ingestion API too, which schemathesis calls with the partner's ingest token.

The servers' outbound HTTP (bid requests, webhooks, pulls, exports to URLs that schemathesis
makes up) goes to a proxy on a closed loopback port: nothing leaves the machine. The DMP's
``export_directory`` is under the test's directory (a file destination made through the API
writes nowhere else), and schemathesis's fuzzing gives the ``path`` of the destinations it
creates under it, so that some are accepted. The exchange's API is run a second time with a buyer's
scoped credential: what it may not do answers the documented 403 (or 404).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from cookiematch.dmp.ingest.records import MAX_EVENTS, UID
from cookiematch.web.buyer.api_spec import OPERATIONS as BUYER
from cookiematch.web.dmp.api_spec import OPERATIONS as DMP
from cookiematch.web.dmp.ingest import LINES_TYPES
from cookiematch.web.exchange.api_spec import OPERATIONS as EXCHANGE
from cookiematch.web.openapi import Operation, document, with_openapi

from conftest import ServerProcess, free_port
from support.configs import ADMIN_TOKEN, buyer_config, dmp_config, serve_argv, write_exchange_config

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OPENAPI = "/admin/v1/openapi.json"
REGISTRIES = {"exchange": EXCHANGE, "buyer": BUYER, "dmp": DMP}
EXAMPLES = 60  # per operation: each role's run takes 20-35 s on two cores


INGEST_TOKEN = "crm-ingest-token-0123456789"
EXPORTS = "exports"  # the DMP's export_directory, under the role's directory
DMP_ENTRIES = """
[[dmp.partners]]
id = "crm"
ingest_token = "{ingest_token}"
sync_url = "https://crm.example/sync?r=${{CALLBACK_URL}}"
pull_url = "http://127.0.0.1:{closed}/records"

[[dmp.segments]]
id = "synced"
rule = {{ synced = "crm" }}

[[dmp.destinations]]
id = "feed"
kind = "file"
path = "{directory}/{{segment}}-{{time}}.csv"
"""


def _config(role: str, directory: Path, port: int) -> Path:
    if role == "exchange":
        return write_exchange_config(directory, port)
    if role == "buyer":
        return buyer_config(directory, port)
    entries = DMP_ENTRIES.format(closed=free_port(), directory=directory, ingest_token=INGEST_TOKEN)
    body = f'export_directory = "{directory / EXPORTS}"\n{entries}'
    return dmp_config(directory, port, body=body)


@pytest.fixture(scope="module", params=sorted(REGISTRIES))
def role_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    start_module_server: Callable[..., ServerProcess],
) -> Iterator[tuple[str, str, Path]]:
    """The role, its URL and the directory of its configuration and store."""
    role: str = request.param
    port = free_port()
    directory = tmp_path_factory.mktemp(role)
    config = _config(role, directory, port)
    proxy = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {"ALL_PROXY": proxy, "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "NO_PROXY": ""}
    start_module_server(argv=serve_argv(config, role), port=port, env=env)
    yield role, f"http://127.0.0.1:{port}", directory


def fetch_document(url: str) -> dict[str, Any]:
    response = httpx.get(url + OPENAPI, timeout=10)  # no token
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    found: dict[str, Any] = response.json()
    return found


def test_the_document_is_served_without_a_token_and_is_valid_openapi_3_1(
    role_url: tuple[str, str, Path],
) -> None:
    role, url, _ = role_url
    found = fetch_document(url)
    validate(found)  # raises on an invalid document
    assert found["openapi"] == "3.1.0"
    listed = {(m.upper(), p) for p, ops in found["paths"].items() for m in ops}
    assert listed == {op.key for op in REGISTRIES[role]}  # every operation is served
    assert found["paths"]["/admin/v1/health"]["get"]["security"] == []
    assert httpx.get(url + "/admin/v1/buyers", timeout=10).status_code == 401


def test_errors_and_security_are_described(role_url: tuple[str, str, Path]) -> None:
    role, url, _ = role_url
    found = fetch_document(url)
    for path, operations in found["paths"].items():
        for method, op in operations.items():
            if path in ("/admin/v1/health", OPENAPI):
                continue
            problem = op["responses"]["401"]["content"]["application/problem+json"]["schema"]
            assert problem == {"$ref": "#/components/schemas/Problem"}, (method, path)
            if "requestBody" in op:
                assert {"400", "413", "422"} <= set(op["responses"]), (method, path)
    members = found["paths"].get("/admin/v1/user_lists/{list_id}/members")
    if role == "exchange":
        assert members["post"]["security"] == [{"admin_token": []}, {"credential": ["user_lists"]}]
        body = members["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/MembersRequest"}
        listing = found["paths"]["/admin/v1/buyers"]["get"]["responses"]["200"]
        assert listing["links"]["get_buyers_nid"] == {
            "operationId": "get_buyers_nid",
            "parameters": {"nid": "$response.body#/buyers/0/nid"},
        }
    if role == "dmp":
        ingestion = found["paths"]["/api/v1/partners/{partner}/records"]["post"]
        assert ingestion["security"] == [{"ingest_token": []}]
        assert [p["name"] for p in ingestion["parameters"]] == ["partner", "Idempotency-Key"]
        assert set(ingestion["responses"]) == {"200", "400", "401", "403", "404", "413", "422",
                                               "503"}  # fmt: skip
        assert "Idempotent-Replayed" in ingestion["responses"]["200"]["headers"]
        assert set(ingestion["requestBody"]["content"]) == {"application/json", *LINES_TYPES}
        record = found["components"]["schemas"]["RawRecord"]  # the rules the DMP checks
        assert record["properties"]["uid"]["pattern"] == f"^{UID.pattern}$"
        assert record["properties"]["events"]["maxItems"] == MAX_EVENTS
    ids = {op["operationId"] for ops in found["paths"].values() for op in ops.values()}
    for ops in found["paths"].values():
        for op in ops.values():
            for answer in op["responses"].values():
                assert {link["operationId"] for link in answer.get("links", {}).values()} <= ids


def test_a_route_without_its_operation_is_refused() -> None:
    async def endpoint(_: object) -> None:
        raise AssertionError("never called")

    routes = [Route("/admin/v1/things", endpoint, methods=["GET", "POST"])]
    listed = [Operation("GET", "/admin/v1/things", "things", {200: None})]
    with pytest.raises(ValueError, match=r"\('POST', '/admin/v1/things'\)"):
        with_openapi("t", "d", routes, listed)
    # routes outside /admin/v1 (e.g. /metrics) are not the admin API's
    assert document("t", "d", [Route("/metrics", endpoint)], []) is not None


CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


INGESTION = "post_api_v1_partners_partner_records"


def schemathesis_config(role: str, directory: Path) -> str:
    """Each security scheme's token; the ingestion API called for the configured partner; a
    destination made by fuzzing a file one, in ``directory``'s export directory."""
    config = f'[auth.openapi.admin_token]\nbearer = "{ADMIN_TOKEN}"\n'
    if role == "dmp":
        config += f'''
[auth.openapi.ingest_token]
bearer = "{INGEST_TOKEN}"

[[operations]]
include-operation-id = "{INGESTION}"
parameters = {{ "path.partner" = "crm" }}

[[operations]]
include-operation-id = "put_destinations_ident"

[operations.parameters]
"path.ident" = "made"
"body.id" = "made"
"body.kind" = "file"
"body.path" = "{directory / EXPORTS}/{{segment}}-{{destination}}.csv"
'''
    return config


def run_schemathesis(url: str, directory: Path, config: str) -> set[tuple[str, str, int]]:
    """schemathesis (examples, coverage, fuzzing and stateful phases; valid and invalid
    requests; the stateful phase follows the links it infers, e.g. from ``Location``),
    bounded and deterministic, under ``config`` (``schemathesis.toml``): the (method, path,
    status) of the requests it made."""
    directory.mkdir(exist_ok=True)
    (directory / "schemathesis.toml").write_text(config)
    argv = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", "schemathesis.toml",
        "run", url + OPENAPI,
        "--checks", ",".join(CHECKS),
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(EXAMPLES), "--generation-deterministic",
        "--workers", "1", "--request-timeout", "10", "--no-color",
        "--report", "har", "--report-har-path", "requests.har",
    ]  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=600, check=False, cwd=directory
    )
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]
    entries = json.loads((directory / "requests.har").read_text())["log"]["entries"]
    return {
        (e["request"]["method"], urlsplit(e["request"]["url"]).path, e["response"]["status"])
        for e in entries
    }


def answered(requests: set[tuple[str, str, int]], method: str, path: str) -> set[int]:
    """The statuses ``method`` on paths starting with ``path`` answered."""
    return {status for m, p, status in requests if m == method and p.startswith(path)}


def test_the_admin_api_keeps_its_contract(role_url: tuple[str, str, Path], tmp_path: Path) -> None:
    """With the admin token (and the DMP's ingestion API with the partner's token); the
    exchange's again with a buyer's credential: the operator's operations and other buyers'
    resources answer the documented 403 (or 404), the buyer's own redirect URL and lists
    their answers."""
    role, url, directory = role_url
    requests = run_schemathesis(url, tmp_path, schemathesis_config(role, directory))
    if role == "dmp":
        assert {200, 201} & answered(requests, "PUT", "/admin/v1/destinations/")
        assert 200 in answered(requests, "POST", "/api/v1/partners/crm/records")
    if role == "exchange":  # again, as a buyer with a credential of every scope
        config = f'''headers = {{ Authorization = "Bearer {buyer_credential(url)}" }}

[[operations]]
include-path-regex = "/redirect_url$"
parameters = {{ "path.nid" = "{SCOPED_NID}" }}
'''
        scoped = run_schemathesis(url, tmp_path / "credential", config)
        assert 403 in answered(scoped, "GET", "/admin/v1/stats")  # the operator's
        assert answered(scoped, "GET", f"/admin/v1/buyers/{SCOPED_NID}/redirect_url") == {200}
        assert 200 in answered(scoped, "GET", "/admin/v1/user_lists")


SCOPED_NID = "scoped-buyer"


def buyer_credential(url: str) -> str:
    """The token of a new credential (every scope) of a buyer created for it."""
    buyer = f"{url}/admin/v1/buyers/{SCOPED_NID}"
    made = httpx.put(buyer, json={"redirect_url": "http://scoped.example/pixel?id="},
                     headers=AUTH, timeout=10)  # fmt: skip
    assert made.status_code in (200, 201), made.text
    scopes = {"scopes": ["user_lists", "redirect_url"]}
    issued = httpx.post(f"{buyer}/credentials", json=scopes, headers=AUTH, timeout=10)
    assert issued.status_code == 201, issued.text
    token: str = issued.json()["token"]
    return token
