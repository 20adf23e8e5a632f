"""``cookiematch conform buyer|exchange``: the conformance kit (``cookiematch.conformance``).
Exit status 0 only when every required case passes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
import httpx

from cookiematch.conformance import report
from cookiematch.conformance.bids import bid_cases
from cookiematch.conformance.buyer import BuyerCases, BuyerTarget
from cookiematch.conformance.case import Case, Result
from cookiematch.conformance.exchange import EXTENDED_URL, Setup, exchange_cases, prepare
from cookiematch.conformance.ids import KitIds
from cookiematch.conformance.runner import run
from cookiematch.errors import CookiematchError


def _outputs(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option("--junit", "junit_file", type=click.Path(dir_okay=False, path_type=Path),
                     help="Write JUnit XML here.")(f)  # fmt: skip
    return click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
                        help="Write a self-contained HTML report here.")(f)  # fmt: skip


def _finish(
    results: list[Result], title: str, junit_file: Path | None, html_file: Path | None
) -> None:
    click.echo(report.table(results, title), nl=False)
    if junit_file is not None:
        junit_file.write_bytes(report.junit(results, title))
    if html_file is not None:
        html_file.write_text(report.html_report(results, title), encoding="utf-8")
    sys.exit(0 if report.passed(results) else 1)


@click.group()
def conform() -> None:
    """Check another party's endpoints against the Cookie Matching protocol."""


@conform.command()
@click.option("--match-url", required=True, help="The redirect URL the exchange sends to.")
@click.option("--push-url", help="The pixel-matching URL (the buyer answers with a 302 back).")
@click.option("--exchange-url", help="Where push redirects must go back to (a prefix).")
@click.option("--bid-url", help="The OpenRTB 2.6 bid endpoint.")
@click.option("--nid", help="The buyer's network ID, checked on the way back from a push.")
@click.option("--max-ms", type=click.IntRange(1), default=500, show_default=True,
              help="An answer later than this fails ('in a timely fashion').")  # fmt: skip
@_outputs
def buyer(
    match_url: str,
    push_url: str | None,
    exchange_url: str | None,
    bid_url: str | None,
    nid: str | None,
    max_ms: int,
    junit_file: Path | None,
    html_file: Path | None,
) -> None:
    """Play the exchange against a buyer's redirect, push and bid endpoints."""
    ids = KitIds(nid or "conformance")
    target = BuyerTarget(match_url, push_url, exchange_url, nid, max_ms / 1000)
    try:
        cases: list[Case] = BuyerCases(target, ids).all()
    except (CookiematchError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from exc
    if bid_url:
        cases += bid_cases(bid_url, ids)
    results = asyncio.run(run(cases))
    _finish(results, f"cookiematch conform buyer {match_url}", junit_file, html_file)


@conform.command()
@click.option("--url", required=True, help="The exchange's Cookie Matching endpoint (/pixel).")
@click.option(
    "--optout-cookie",
    metavar="COOKIE",
    help="The Cookie header of a browser that opted out at the exchange.",
)
@click.option(
    "--extended-nid",
    metavar="NID",
    help=f"A buyer configured with the redirect URL {EXTENDED_URL}.",
)
@click.option(
    "--denied-list",
    type=click.IntRange(1),
    metavar="ID",
    help="A user list ad_network_xyz may not add to (another buyer's).",
)
@click.option("--hosted-list", type=click.IntRange(1), metavar="ID",
              help="A user list of cookie-monster.")  # fmt: skip
@_outputs
def exchange(
    url: str,
    optout_cookie: str | None,
    extended_nid: str | None,
    denied_list: int | None,
    hosted_list: int | None,
    junit_file: Path | None,
    html_file: Path | None,
) -> None:
    """Check an exchange against the seed's examples (the golden vectors); the options stand
    for the states the examples need that contradict their setup (without one, its cases are
    not run)."""
    setup = Setup(optout_cookie, extended_nid, denied_list, hosted_list)

    async def play() -> list[Result]:
        async with httpx.AsyncClient(timeout=10) as client:
            browser = await prepare(client, url)
        return await run(exchange_cases(url, browser, setup))

    _finish(asyncio.run(play()), f"cookiematch conform exchange {url}", junit_file, html_file)
