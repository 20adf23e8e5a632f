"""Every outbound call is counted by kind, host and outcome and timed
(``web/outbound_metrics.py``), against a real server and a port nobody listens on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cookiematch.web.outbound import BidTransport, PartnerTransport
from cookiematch.web.outbound_metrics import (
    MAX_HOSTS_PER_KIND,
    OUTBOUND_REQUESTS,
    OUTBOUND_SECONDS,
    record_outbound,
)

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


def test_a_worker_labels_a_bounded_number_of_hosts_per_kind() -> None:
    """A win notice goes where the bid's nurl says: hosts beyond the bound count as other,
    and a URL's user and password never become a label."""
    for n in range(MAX_HOSTS_PER_KIND + 10):
        record_outbound("win_notice_test", f"http://auction-{n}.b.example/win", 200, 0.001)
    record_outbound("win_notice_test", "http://auction-0.b.example/again", 200, 0.001)
    labelled = {
        labels[1] for labels in OUTBOUND_REQUESTS.labelled() if labels[0] == "win_notice_test"
    }
    assert len(labelled) == MAX_HOSTS_PER_KIND + 1 and "other" in labelled
    assert OUTBOUND_REQUESTS.value(("win_notice_test", "other", 200)) == 10
    assert OUTBOUND_REQUESTS.value(("win_notice_test", "auction-0.b.example", 200)) == 2
    record_outbound("optout_test", "https://user:secret@Hooks.Example:8443/x", 204, 0.001)
    assert OUTBOUND_REQUESTS.value(("optout_test", "hooks.example:8443", 204)) == 1
