"""Consent kept on the profile, end to end: browsers sync against a real ``cookiematch serve
--role dmp`` process under TC strings (written bit by bit, tests/protocol/tcf_builder.py); the
partner's records then come over the ingestion API, and the segment is exported by the CLI to a
file destination bound to a GVL vendor, over the same SQLite file."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from click.testing import CliRunner

from cookiematch.cli.dmp_segments import export, segments
from protocol.tcf_builder import core_of_today, id_bits, vendor_bitfield

from conftest import ServerProcess, free_port
from support.configs import serve_argv

ADMIN = "dmp-admin-token-0123456789"
INGEST = "dsp-ingest-token-0123456789"
DSP, DEST = 9, 5  # GVL vendor IDs: the partner's, the export destination's


def tc(purposes: list[int], vendors: list[int]) -> str:
    """A TC string of today (a consent counts 13 months from its LastUpdated)."""
    return core_of_today(
        purpose_consents=id_bits(purposes, 24),
        purpose_legitimate_interests=id_bits([], 24),
        vendor_consents=vendor_bitfield(10, vendors),
    )


ALL = tc([1, 2, 3, 4], [DSP, DEST])  # the partner and the destination
NOT_DEST = tc([1, 2, 3, 4], [DSP])
NOTHING = tc([], [])


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("dmp-consent")
    path = directory / "dmp.toml"
    path.write_text(
        f"""
[store]
url = "sqlite:///{directory / "dmp.db"}"

[dmp]
listen = "127.0.0.1:{free_port()}"
admin_token = "{ADMIN}"
recompute_interval_minutes = 0

[[dmp.clients]]
id = "shop"

[[dmp.partners]]
id = "dsp"
sync_url = "https://dsp.example/sync?r=${{CALLBACK_URL}}"
gvl_vendor_id = {DSP}
ingest_token = "{INGEST}"

[[dmp.segments]]
id = "gold"
rule = {{ attribute = "tier", op = "eq", value = "gold" }}

[[dmp.destinations]]
id = "pool"
kind = "file"
path = "{directory / "out" / "{segment}.csv"}"
partner = "dsp"
gvl_vendor_id = {DEST}
"""
    )
    return path


@pytest.fixture(scope="module")
def server(config: Path, start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    port = int(config.read_text().split('listen = "127.0.0.1:')[1].split('"')[0])
    return start_module_server(serve_argv(config, "dmp"), port=port)


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


def browser(http: httpx.Client, dsp_uid: str, query: str) -> str:
    """A browser that syncs the DSP under ``query``'s signals: its DMP uid."""
    response = http.get(f"/sync?client=shop{query}")
    uid = response.headers["set-cookie"].split(";")[0].partition("=")[2]
    stored = http.get(f"/callback/dsp?uid={dsp_uid}{query}", headers={"Cookie": f"dmp_id={uid}"})
    assert stored.status_code == 200
    return uid


def invoke(command: Callable[..., object], *args: str) -> str:
    result = CliRunner().invoke(command, list(args), catch_exceptions=False)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    return result.output


def test_ingestion_and_exports_follow_the_stored_consent(http: httpx.Client, config: Path) -> None:
    quiet = browser(http, "D-quiet", "")  # never under GDPR
    browser(http, "D-all", f"&gdpr=1&gdpr_consent={ALL}")
    browser(http, "D-not-dest", f"&gdpr=1&gdpr_consent={NOT_DEST}")
    gone = browser(http, "D-withdrawn", f"&gdpr=1&gdpr_consent={ALL}")
    withdrawn = http.get(f"/sync?client=shop&gdpr=1&gdpr_consent={NOTHING}",
                         headers={"Cookie": f"dmp_id={gone}"})  # fmt: skip
    assert "set-cookie" not in withdrawn.headers

    records = [{"uid": u, "attributes": {"tier": "gold"}}
               for u in ("D-quiet", "D-all", "D-not-dest", "D-withdrawn")]  # fmt: skip
    answer = http.post(
        "/api/v1/partners/dsp/records",
        content=msgspec.json.encode(records),
        headers={"Authorization": f"Bearer {INGEST}", "Content-Type": "application/json"},
    ).json()
    assert (answer["accepted"], answer["rejected"]) == (3, 1)
    assert answer["rejects"] == [
        {"index": 3, "reason": "consent: the profile's GDPR consent does not allow partner 'dsp'"}
    ]
    shown: dict[str, Any] = http.get(
        f"/admin/v1/profiles/{gone}", headers={"Authorization": f"Bearer {ADMIN}"}
    ).json()
    assert shown["consent"]["dmp_cookie"]["refused"] is True and "tier" not in shown["attributes"]
    quiet_profile = http.get(
        f"/admin/v1/profiles/{quiet}", headers={"Authorization": f"Bearer {ADMIN}"}
    ).json()
    assert "consent" not in quiet_profile

    invoke(segments, "recompute", "--config", str(config))
    report = json.loads(
        invoke(export, "--config", str(config), "--segment", "gold", "--destination", "pool",
               "--json")
    )  # fmt: skip
    assert (report["members"], report["no_consent"], report["added"]) == (3, 1, 2)
    written = (config.parent / "out" / "gold.csv").read_text().splitlines()
    assert written[0] == "action,id" and sorted(written[1:]) == ["add,D-all", "add,D-quiet"]
