"""The demo stack with traffic for the operator console to chart: the exchange and the buyers
recording their series every second, the publisher site, simulated browsers visiting it
(match tags, auctions, wins, pixel matches) and, on demand, the DMP's stories (its sync
funnel, in-band and S2S data, segments, overlap, exports). Used by the console's browser tests
and by ``scripts/console_screenshots.py``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cookiematch.demo.browser import SimulatedBrowser
from cookiematch.demo.dmp_data import dmp_with_data_half, run_data_story
from cookiematch.demo.dmp_story import DMP_DEMO_TOKEN, GidRelay, run_dmp_scenario, serving
from cookiematch.demo.publisher_site import serve_publisher
from cookiematch.demo.stack import ADMIN_TOKEN, FINEST, PUBLISHER, Urls, demo_stack

__all__ = ["ADMIN_TOKEN", "DMP_DEMO_TOKEN", "ConsoleStack", "browse", "console_stack"]

CONSOLE = {"COOKIEMATCH_CONSOLE__SAMPLE_SECONDS": "1"}
TABLE_SIZES = {"COOKIEMATCH_EXCHANGE__TABLE_SIZES_INTERVAL_SECONDS": "60"}  # the floor


@dataclass(frozen=True, slots=True)
class ConsoleStack:
    """The roles' URLs, the publisher's page, and the DMP's URL (when it runs)."""

    urls: Urls
    page: str
    dmp: str | None = None


@contextlib.contextmanager
def console_stack(directory: Path, *, dmp: bool = False) -> Iterator[ConsoleStack]:
    """The demo stack and the publisher page; with ``dmp``, the DMP too, after its stories
    ran (their expectations are the demo's, not checked here)."""
    with (
        serving([GidRelay()]) as (relay,),
        demo_stack(
            directory, retail_redirect=relay.url, extra=CONSOLE, exchange_extra=TABLE_SIZES
        ) as (_, urls),
        serve_publisher(urls.exchange, PUBLISHER) as publisher_port,
    ):
        page = f"http://{PUBLISHER}.localhost:{publisher_port}/"
        if not dmp:
            yield ConsoleStack(urls, page)
            return
        with dmp_with_data_half(directory, urls.exchange, extra=CONSOLE) as (found, half, stubs):
            run_dmp_scenario(found.base, stubs)
            run_data_story(found, half, page, lambda ok, what: None)
            yield ConsoleStack(urls, page, found.base)


def browse(urls: Urls, page: str, *, seconds: float, visits: int = 3) -> int:
    """New browsers visit ``page`` ``visits`` times each, and one more loads FinestDSP's match
    tag without a cookie or ``google_sc`` (``google_error=3``), until ``seconds`` passed; the
    number of visits."""
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        browser = SimulatedBrowser()
        for _ in range(visits):
            browser.visit(page)
            done += 1
        browser.close()
        bare = SimulatedBrowser()
        stop = lambda url: not url.startswith(urls.exchange)  # noqa: E731
        bare.follow(f"{urls.exchange}/pixel?google_nid={FINEST}&google_cm", stop=stop)
        bare.close()
    return done
