"""Screenshots of the operator console's pages into docs/console/*.png, over the demo stack
with traffic and the DMP after its stories (``cookiematch.demo.console``), taken with
Debian's chromium:

    .venv/bin/python scripts/console_screenshots.py [--seconds 75]

The traffic runs ``--seconds`` (past a minute, so the exchange's table sizes are measured a
second time and the tables page charts them).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from cookiematch.demo.console import ADMIN_TOKEN, DMP_DEMO_TOKEN, browse, console_stack
from cookiematch.demo.stack import MONSTER

OUT = Path(__file__).resolve().parents[1] / "docs" / "console"
EXCHANGE = {
    "exchange": "/console/exchange",
    "buyers": "/console/buyers",
    "buyer-form": f"/console/buyers/{MONSTER}",
    "tables": "/console/tables",
}
BUYER = {"buyer": "/console/buyer"}
DMP = {"dmp-funnel": "/console/dmp", "dmp-segments": "/console/segments"}
ARGS = ["--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP *.localhost 127.0.0.1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=75.0)
    seconds = parser.parse_args().seconds
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (scripts/install-system-deps.sh)")
    OUT.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="console-shots-") as tmp,
        console_stack(Path(tmp), dmp=True) as stack,
    ):
        urls = stack.urls
        traffic = threading.Thread(
            target=browse, args=(urls, stack.page), kwargs={"seconds": seconds}
        )
        traffic.start()
        traffic.join()
        assert stack.dmp is not None
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{urls.exchange}/console/login")
            page.screenshot(path=str(OUT / "login.png"))
            for base, token, pages in (
                (urls.exchange, ADMIN_TOKEN, EXCHANGE),
                (urls.finest, ADMIN_TOKEN, BUYER),
                (stack.dmp, DMP_DEMO_TOKEN, DMP),
            ):
                shoot(page, base, token, pages)
            browser.close()


def shoot(page: Any, base: str, token: str, pages: dict[str, str]) -> None:
    """Log in to the console at ``base`` and take each page's screenshot."""
    page.goto(f"{base}/console/login")
    page.fill("input[name=token]", token)
    page.click("button")
    page.wait_for_load_state("networkidle")
    for name, path in pages.items():
        page.goto(f"{base}{path}")
        page.wait_for_load_state("networkidle")
        page.wait_for_function(
            "[...document.querySelectorAll('figure.chart')].every(f => f.dataset.state)"
        )
        page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
        print("wrote", OUT / f"{name}.png")


if __name__ == "__main__":
    main()
