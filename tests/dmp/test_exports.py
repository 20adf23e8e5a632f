"""Exports' delivery: signatures, retries, and the sink each kind of destination gets."""

from __future__ import annotations

from cookiematch.dmp.exports import signing
from cookiematch.dmp.exports.model import (
    Delivery,
    ExchangeUserListDestination,
    FileDestination,
    FileFormat,
    HttpDestination,
)
from cookiematch.dmp.exports.retry import post_with_retry
from cookiematch.dmp.exports.sinks import ExchangeUserListSink, FileSink, HttpSink, make_sink

from .helpers import NOW
from .scripted_transport import ScriptedTransport, Sleeps

SECRET = b"s" * 32


def test_signatures_verify_and_refuse_tampering_and_replays() -> None:
    body = b'{"add":["a"]}'
    headers = signing.sign(SECRET, body, NOW)
    assert headers[signing.SIGNATURE_HEADER].startswith("v1=")
    assert signing.verify(SECRET, headers, body, NOW + 10)
    assert not signing.verify(SECRET, headers, body + b" ", NOW)
    assert not signing.verify(b"x" * 32, headers, body, NOW)
    assert not signing.verify(SECRET, headers, body, NOW + 301)
    lowered = {k.lower(): v for k, v in headers.items()}
    assert signing.verify(SECRET, lowered, body, NOW)


async def test_retries_back_off_exponentially_until_a_final_answer() -> None:
    transport = ScriptedTransport((503, {}), TimeoutError, (500, {}), (200, {}))
    sleeps = Sleeps()
    delivery = Delivery(max_attempts=5, backoff_seconds=0.5)
    attempts = await post_with_retry(
        transport, "http://d/", b"{}", lambda: {}, delivery, sleep=sleeps, rand=lambda: 1.0
    )
    assert attempts.attempts == 4 and attempts.answer is not None
    assert attempts.answer.status == 200
    assert sleeps.waits == [0.5, 1.0, 2.0]


async def test_a_client_error_is_final_and_exhaustion_is_reported() -> None:
    sleeps = Sleeps()
    final = await post_with_retry(
        ScriptedTransport((400, {})), "http://d/", b"{}", lambda: {}, Delivery(), sleep=sleeps
    )
    assert final.attempts == 1 and final.error is None
    exhausted = await post_with_retry(
        ScriptedTransport(*[ConnectionError] * 3), "http://d/", b"{}", lambda: {},
        Delivery(max_attempts=3), sleep=sleeps,
    )  # fmt: skip
    assert exhausted.attempts == 3 and exhausted.answer is None and exhausted.error


def test_each_kind_of_destination_gets_its_sink() -> None:
    transport = ScriptedTransport()
    http = HttpDestination("h", "http://d.example/", SECRET, "dsp")
    exchange = ExchangeUserListDestination("x", "http://e.example", "t", 7, "nid", "dsp")
    files = FileDestination("f", "/tmp/{segment}.csv", FileFormat.CSV, None)
    assert isinstance(make_sink(http, transport), HttpSink)
    assert isinstance(make_sink(exchange, transport), ExchangeUserListSink)
    assert isinstance(make_sink(files, transport), FileSink)
