"""Every outbound call is counted by kind, host and outcome and timed
(``web/outbound_metrics.py``), against a real server and a port nobody listens on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cookiematch.web.outbound import BidTransport, PartnerTransport
from cookiematch.web.outbound_metrics import OUTBOUND_REQUESTS, OUTBOUND_SECONDS

from conftest import ServerProcess, free_port

HERE = Path(__file__).resolve().parent


async def test_answers_and_failures_are_counted_by_kind_host_and_outcome(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(factory="sample_app:make_app", pythonpath=[HERE])
    host = f"127.0.0.1:{server.port}"
    answered = ("partner", host, 200)
    before = OUTBOUND_REQUESTS.value(answered), OUTBOUND_SECONDS.count(("partner", host))
    async with PartnerTransport() as partners:
        answer = await partners.get(f"{server.url}/echo", {}, {}, timeout=5)
    assert answer.status == 200
    assert OUTBOUND_REQUESTS.value(answered) == before[0] + 1
    assert OUTBOUND_SECONDS.count(("partner", host)) == before[1] + 1

    nobody = f"127.0.0.1:{free_port()}"
    bids = BidTransport()
    try:
        with pytest.raises(ConnectionError):
            await bids.post(f"http://{nobody}/bid", b"{}", timeout=5)
    finally:
        await bids.aclose()
    assert OUTBOUND_REQUESTS.value(("bid", nobody, "error")) == 1
