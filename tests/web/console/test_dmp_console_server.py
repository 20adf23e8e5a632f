"""The DMP's console through a real ``cookiematch serve`` process on the bundled example
configuration: the funnel page shows the partners' loss, the segments page its tables, and the
funnel's series are recorded from real sync requests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from conftest import REPO, ServerProcess, free_port
from support.configs import ADMIN_TOKEN, serve_argv
from support.console import log_in

ORIGIN = "http://shop.localhost:8000"


def test_the_dmps_console(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    port = free_port()
    env = {
        "COOKIEMATCH_STORE__URL": f"sqlite:///{tmp_path / 'dmp.db'}",
        "COOKIEMATCH_DMP__LISTEN": f"127.0.0.1:{port}",
        "COOKIEMATCH_DMP__PUBLIC_URL": f"http://127.0.0.1:{port}",
        "COOKIEMATCH_DMP__ADMIN_TOKEN": ADMIN_TOKEN,
        "COOKIEMATCH_CONSOLE__SAMPLE_SECONDS": "1",
    }
    argv = serve_argv(REPO / "examples" / "dmp.toml", "dmp")
    start_server(argv=argv, port=port, env=env)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        rule = {"attribute": "tier", "op": "eq", "value": "gold"}
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        created = http.put("/admin/v1/segments/vip", json={"rule": rule}, headers=auth)
        assert created.status_code == 201
        assert log_in(http).headers["location"] == "/console/dmp"
        deadline = time.monotonic() + 20
        while True:
            for _ in range(3):
                assert http.get("/sync?client=shop&gdpr=0", headers={"Origin": ORIGIN}).is_success
            series = http.get("/console/api/series?name=funnel&minutes=5").json()
            if any(v for line in series["lines"].values() for v in line):
                break
            assert time.monotonic() < deadline, series
            time.sleep(0.5)
        assert any(name.startswith("partner|") for name in series["lines"])
        funnel = http.get("/console/dmp")
        assert funnel.status_code == 200
        assert "<td>analytics</td>" in funnel.text and "loss rate" in funnel.text
        segments = http.get("/console/segments")
        assert segments.status_code == 200
        # one segment: no heat map, whether the engine's first recompute ran yet or not
        assert "no overlap yet" in segments.text or "Fewer than two segments" in segments.text
        deadline = time.monotonic() + 20  # the definitions are refreshed every second
        while (
            "vip"
            not in (sizes := http.get("/console/api/series?name=segment_sizes")).json()["lines"]
        ):
            assert time.monotonic() < deadline, sizes.text
            time.sleep(0.5)
        assert set(sizes.json()["lines"]["vip"]) <= {0.0, None}  # nobody in it yet
        assert "<td>vip</td>" in http.get("/console/segments").text
