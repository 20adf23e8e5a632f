"""``run_dmp_scenario`` against a real DMP process and the partner stubs: the lossy partner
shows its loss in the funnel, the others none.

The funnel must show the lossy partner's loss alone, so the demo's DMP gives browser requests'
store calls 5 s, not a pixel's 50 ms (``dmp_story.STORE_DEADLINE_MS``): on a loaded machine or
a slow disk SQLite misses 50 ms now and then, and a callback over its deadline is answered
with the pixel but not counted as a callback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cookiematch.demo.dmp_story import partner_stubs, print_funnel, run_dmp_scenario
from cookiematch.demo.dmp_story import write_dmp_demo_config as write_config

from conftest import ServerProcess, free_port
from support.configs import serve_argv


def test_scenario_reports_the_lossy_partner(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    lines: list[str] = []
    with partner_stubs() as stubs:
        port = free_port()
        config = write_config(tmp_path, port, stubs)
        argv = serve_argv(config, "dmp")
        start_server(argv, port=port)
        report = run_dmp_scenario(
            f"http://dmp.localhost:{port}", stubs, browsers=40, out=lines.append
        )
    dsp = report.partners["dsp"]
    assert dsp.counts["callbacks"] + stubs[3].dropped == dsp.counts["pixels"]
    assert 0 < dsp.loss_rate < 0.6
    for partner in ("analytics", "email", "orders"):
        row = report.partners[partner]
        assert row.counts == {
            "pixels": 40, "callbacks": 40, "callback_failed": 0, "rejected": 0, "inband": 0,
            "initiated": 0, "initiated_stored": 0, "cookie_refused": 0,
        }  # fmt: skip
    assert report.clients["shop"].counts["tags_loaded"] >= 40
    assert '"email":"email-00001"' in lines[1]  # each partner kept its own cookie
    print_funnel(report, out=lines.append)
    assert lines[-1].startswith("shop")
