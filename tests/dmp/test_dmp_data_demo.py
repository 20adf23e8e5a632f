"""The demo's DMP data half (``demo/dmp_data.py``) against real servers: the exchange (with
RetailDSP and its user list), the DMP, the partner stubs and the gid relay; every step's
check must hold."""

from __future__ import annotations

from pathlib import Path

from cookiematch.demo.dmp_data import CRM, dmp_with_data_half, run_data_story
from cookiematch.demo.dmp_story import GidRelay, serving
from cookiematch.demo.stack import Ports, Urls, example_path, exchange_overrides, running


def test_the_data_half_checks_every_step(tmp_path: Path) -> None:
    checks: list[tuple[bool, str]] = []
    with serving([GidRelay()]) as (relay,):
        ports = Ports.pick()
        urls = Urls.of(ports)
        overrides = exchange_overrides(tmp_path, ports, urls, relay.url)
        exchange = example_path("exchange.toml")
        with (
            running(exchange, overrides, ports.exchange, tmp_path / "exchange.log"),
            dmp_with_data_half(tmp_path, urls.exchange, browsers=60) as (dmp, half, _),
        ):
            run_data_story(dmp, half, lambda ok, what: checks.append((ok, what)))
            delivery = dmp.funnel().delivery[CRM]
    assert [what for ok, what in checks if not ok] == []
    assert len(checks) >= 10  # 11 once the exchange answers a list's member count
    assert delivery.inband is not None and delivery.s2s is not None
    assert half.crm.values_cut > 0 and half.crm.dropped > 0
    assert delivery.inband.arrived == delivery.s2s.arrived  # the same syncs carried both
    assert delivery.inband.values < delivery.s2s.values  # the URL limit cut the in-band data
