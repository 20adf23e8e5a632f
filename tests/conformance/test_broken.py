"""The kit against deliberately broken servers: each breaks one rule, and the kit fails the
case with a message that says what to fix (and the run as a whole fails)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx
import pytest

from cookiematch.conformance import report
from cookiematch.conformance.bids import bid_cases
from cookiematch.conformance.buyer import BuyerCases, BuyerTarget
from cookiematch.conformance.case import Result
from cookiematch.conformance.exchange import Browser, exchange_cases, prepare
from cookiematch.conformance.ids import KitIds
from cookiematch.conformance.runner import run

from .broken import EXCHANGE, LEAKED, serving
from .servers import conform


async def play(flaw: str, *, limit_seconds: float = 5.0) -> list[Result]:
    with serving(flaw) as url:
        ids = KitIds("dsp")
        target = BuyerTarget(f"{url}/match?id=", f"{url}/push", EXCHANGE, "dsp", limit_seconds)
        return await run(BuyerCases(target, ids).all() + bid_cases(f"{url}/bid", ids))


def failures(results: list[Result]) -> dict[str, tuple[str, ...]]:
    return {r.case.name: r.failures for r in results if r.status == "fail"}


async def test_the_faithful_fixture_passes() -> None:
    results = await play("")
    assert failures(results) == {}
    assert report.passed(results)


async def test_a_buyer_that_sets_its_cookie_only_when_missing_passes() -> None:
    """Its cookie comes back on every later request the client makes (no ``Secure``, plain
    http): each new-browser case must still be a browser without it."""
    results = await play("cookie_once")
    assert failures(results) == {}


@pytest.mark.parametrize(
    ("flaw", "case", "message"),
    [
        ("500", "google_error=5 (invalid_push)", "a browser-facing endpoint never answers 5xx"),
        ("html", "gid and cver, new browser", "with Content-Type 'text/html': serve a 1x1 image"),
        ("big", "gid and cver, new browser", "the image is 2x2: serve a 1x1 invisible pixel"),
        ("no_cookie", "gid and cver, new browser", "no Set-Cookie: a browser without the"),
        ("cookie_on_opt_out", "google_error=1 opts out", "assign no cookie ID and write no match"),
        ("strict_gid", "malformed google_gid", "answered 400: serve a 1x1 image (200) or 204"),
        ("push_changed", "push: gid, cver and google_push", "pass the value through unchanged"),
        ("push_elsewhere", "push: extras before", "redirect back to the exchange"),
        ("push_pixel", "push: extras after", "answered 200: on a pixel-matching request"),
        ("push_bad_hm", "push: gid, cver and google_push", "is not URL-safe base64 of at most"),
        ("bid_500", "bid request without a Google User ID", "answered 500"),
        ("bid_wrong_id", "bid request with google_user_id (user.id)", "echo the request's id"),
        ("bid_wrong_imp", "bid request with google_user_id (user.id)", "not an imp of the request"),
        ("bid_not_json", "bid request without a Google User ID", "OpenRTB 2.6 BidResponse"),
    ],
)  # fmt: skip
async def test_each_broken_rule_fails_with_what_to_fix(flaw: str, case: str, message: str) -> None:
    results = await play(flaw)
    failed = failures(results)
    assert case in failed, sorted(failed)
    assert any(message in text for text in failed[case]), failed[case]
    assert not report.passed(results)


async def test_a_slow_buyer_fails_the_timely_rule() -> None:
    """The fixture sleeps a full second; the limit is a fifth of that."""
    with serving("slow") as url:
        target = BuyerTarget(f"{url}/match?id=", limit_seconds=0.2)
        failed = failures(await run(BuyerCases(target, KitIds("dsp")).match_cases()[:1]))
    assert "over the 200 ms limit" in " ".join(failed["gid and cver, new browser"])


async def test_a_bid_after_tmax_fails() -> None:
    with serving("bid_slow") as url:
        failed = failures(await run(bid_cases(f"{url}/bid", KitIds("dsp"))[:1]))
    assert "with tmax=300: the exchange has dropped the bid" in " ".join(
        failed["bid request without a Google User ID"]
    )


async def test_an_exchange_that_never_matches_fails_with_the_expected_redirect() -> None:
    with serving("") as url:
        results = await run(exchange_cases(f"{url}/pixel", Browser("id=1", "gid")))
    failed = failures(results)
    assert "simple request: success" in failed
    assert failed["simple request: success"] == (
        "redirected to http://ad.network.com/pixel?id=&google_error=3, expected "
        "http://ad.network.com/pixel?id=&google_gid=dGhpcyBpcyBhbiBleGFtGxl&google_cver=1 "
        "(gid and cver: any value)",
    )
    assert "simple request: no doubleclick cookie" not in failed


async def test_an_exchange_that_hands_out_its_cookie_fails_the_gid_cases() -> None:
    async with httpx.AsyncClient() as client, contextlib.AsyncExitStack() as stack:
        url = stack.enter_context(serving("leaky")) + "/pixel"
        browser = await prepare(client, url)
        assert browser == Browser(f"id={LEAKED}", LEAKED)
        failed = failures(await run(exchange_cases(url, browser)))
    assert "same browser, same buyer: the same gid" not in failed
    assert failed["another buyer: another gid"] == (
        f"buyer 1234 got ad_network_xyz's google_gid ({LEAKED}): derive the gid per buyer",
    )
    assert failed["the gid is not the exchange's cookie"] == (
        f"google_gid={LEAKED} is the exchange's cookie value: encrypt it per buyer",
    )


def test_the_command_exits_1_and_reports_the_failure(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    with serving("no_cookie") as url:
        done = conform("buyer", "--match-url", f"{url}/match?id=", "--junit", str(junit))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL  match     gid and cver, new browser" in done.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and int(suite.get("failures", "0")) >= 1
