"""The demo stack with traffic for the operator console to chart: the exchange and both buyers
recording their series every second, the publisher site, and simulated browsers visiting it
(match tags, auctions, wins, pixel matches). Used by the console's browser tests and by
``scripts/console_screenshots.py``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from cookiematch.demo.browser import SimulatedBrowser
from cookiematch.demo.publisher_site import serve_publisher
from cookiematch.demo.stack import ADMIN_TOKEN, FINEST, PUBLISHER, Urls, demo_stack

__all__ = ["ADMIN_TOKEN", "browse", "console_stack"]

CONSOLE = {"COOKIEMATCH_CONSOLE__SAMPLE_SECONDS": "1"}
TABLE_SIZES = {"COOKIEMATCH_EXCHANGE__TABLE_SIZES_INTERVAL_SECONDS": "60"}  # the floor


@contextlib.contextmanager
def console_stack(directory: Path) -> Iterator[tuple[Urls, str]]:
    """The demo stack and the publisher page; yields the URLs and the page's URL."""
    with (
        demo_stack(directory, extra=CONSOLE, exchange_extra=TABLE_SIZES) as (_, urls),
        serve_publisher(urls.exchange, PUBLISHER) as publisher_port,
    ):
        yield urls, f"http://{PUBLISHER}.localhost:{publisher_port}/"


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
