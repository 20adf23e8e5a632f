"""The operator console in a real headless chromium, over the demo stack with traffic: log in
with the admin token, open every exchange page, see charts drawn with data, change a buyer
through its form; a change posted without the form's CSRF token is refused (403)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cookiematch.demo.console import (
    ADMIN_TOKEN,
    DMP_DEMO_TOKEN,
    ConsoleStack,
    browse,
    console_stack,
)
from cookiematch.demo.stack import MONSTER, Urls

from support.browser import headless_chromium

pytestmark = pytest.mark.browser

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PAGES = ("/console/exchange", "/console/buyers", "/console/tables")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    """The demo stack with the DMP after its stories, and traffic on the publisher's page."""
    with console_stack(tmp_path_factory.mktemp("console"), dmp=True) as found:
        browse(found.urls, found.page, seconds=4)
        traffic = threading.Thread(
            target=browse, args=(found.urls, found.page), kwargs={"seconds": 6}
        )
        traffic.start()
        yield found
        traffic.join()


@pytest.fixture
def stack(running: ConsoleStack) -> Urls:
    return running.urls


def stored_buyer(urls: Urls, nid: str) -> dict[str, Any]:
    """The buyer as the admin API shows it (over loopback: *.localhost is chromium's only)."""
    base = urls.exchange.replace("exchange.localhost", "127.0.0.1")
    answer = httpx.get(f"{base}/admin/v1/buyers/{nid}", headers=ADMIN)
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def log_in(page: Any, urls: Urls) -> None:
    page.goto(f"{urls.exchange}/console")
    page.fill("input[name=token]", ADMIN_TOKEN)
    page.click("button")
    page.wait_for_url(f"{urls.exchange}/console/exchange")


def test_every_page_opens_and_charts_draw_real_data(stack: Urls) -> None:
    with headless_chromium() as context:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        failed: list[str] = []
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
        log_in(page, stack)
        for path in PAGES:
            page.goto(f"{stack.exchange}{path}")
            page.wait_for_load_state("networkidle")
            figures = page.locator("figure.chart")
            assert figures.count() >= 2, path
            page.wait_for_function(
                "[...document.querySelectorAll('figure.chart')].every(f => f.dataset.state)"
            )
            assert page.locator("figure.chart[data-state=failed]").count() == 0, path
        page.goto(f"{stack.exchange}/console/exchange")
        drawn = page.locator("figure.chart[data-state=drawn]").first
        drawn.wait_for(timeout=15000)
        assert int(drawn.get_attribute("data-points") or 0) >= 1
        assert page.locator("figure.chart[data-state=drawn] canvas").count() >= 1
        assert all(url.endswith("/favicon.ico") for url in failed), failed
        errors = [e for e in errors if not e.startswith("Failed to load resource")]
        assert not errors, errors  # no CSP violation, no script error


def test_a_buyer_is_changed_through_the_form_and_csrf_is_required(stack: Urls) -> None:
    with headless_chromium() as context:
        page = context.new_page()
        log_in(page, stack)
        page.goto(f"{stack.exchange}/console/buyers")
        page.click(f"a[href='/console/buyers/{MONSTER}']")
        record = page.input_value("textarea[name=record]")
        assert '"nid": "cookie-monster"' in record
        page.fill(
            "textarea[name=record]",
            record.replace('"pixel_matching": true', '"pixel_matching": false'),
        )
        page.click("main button")
        page.wait_for_selector("#saved")
        assert stored_buyer(stack, MONSTER)["pixel_matching"] is False
        # the same change without the form's token, from the logged-in page: refused
        status = page.evaluate(
            """async (url) => (await fetch(url, {method: 'POST', body: new URLSearchParams(
                {record: '{"redirect_url": "https://elsewhere.example/"}'})})).status""",
            f"{stack.exchange}/console/buyers/{MONSTER}",
        )
        assert status == 403
        restored = record  # put it back for the other tests
        page.fill("textarea[name=record]", restored)
        page.click("main button")
        page.wait_for_selector("#saved")
        assert stored_buyer(stack, MONSTER)["pixel_matching"] is True


def test_a_page_from_another_site_cannot_post_to_the_console(stack: Urls, tmp_path: Path) -> None:
    """A cross-site form post carries no Strict session cookie and a cross-site
    Sec-Fetch-Site: nothing changes."""
    from support.browser import RecordingSite, serve_site

    site = RecordingSite()
    target = f"{stack.exchange}/console/buyers/{MONSTER}"
    site.pages["/evil.html"] = (
        f'<!doctype html><form method=post action="{target}">'
        '<input name=record value=\'{"redirect_url": "https://evil.example/"}\'>'
        "<input name=csrf value=guess></form>"
        "<script>document.forms[0].submit()</script>"
    )
    with serve_site(site), headless_chromium() as context:
        page = context.new_page()
        log_in(page, stack)
        response = []
        page.on("response", lambda r: response.append(r.status) if r.url == target else None)
        page.goto(f"http://evil.localhost:{site.port}/evil.html")
        page.wait_for_load_state("networkidle")
        assert response and response[-1] == 403
    assert "evil" not in stored_buyer(stack, MONSTER)["redirect_url"]


def test_the_buyers_console_charts_its_match_rate_and_table_size(stack: Urls) -> None:
    with headless_chromium() as context:
        page = context.new_page()
        page.goto(f"{stack.finest}/console")
        page.fill("input[name=token]", ADMIN_TOKEN)
        page.click("button")
        page.wait_for_url(f"{stack.finest}/console/buyer")
        page.wait_for_load_state("networkidle")
        page.wait_for_function(
            "[...document.querySelectorAll('figure.chart')].every(f => f.dataset.state)"
        )
        assert page.locator("figure.chart[data-state=failed]").count() == 0
        rate = page.locator("figure.chart[data-source*='share=matched']")
        assert rate.get_attribute("data-state") == "drawn"
        entries = page.locator("figure.chart[data-source*='name=buyer_table']").first
        stale = page.locator("figure.chart[data-source*='name=buyer_table'][data-source*=stale]")
        assert entries.get_attribute("data-state") == stale.get_attribute("data-state") == "drawn"
        assert "stale share" in page.content()  # the table's size as last counted
        wins = page.locator("figure.chart[data-source*='ratio=won']")  # the exchange's notices
        assert wins.get_attribute("data-state") == "drawn"
        assert page.locator("main table tbody tr").count() >= 2  # and the bids answered last


def test_the_dmps_console_draws_its_funnel_and_heat_map(running: ConsoleStack) -> None:
    assert running.dmp is not None
    with headless_chromium() as context:
        page = context.new_page()
        page.goto(f"{running.dmp}/console")
        page.fill("input[name=token]", DMP_DEMO_TOKEN)
        page.click("button")
        page.wait_for_url(f"{running.dmp}/console/dmp")
        for path in ("/console/dmp", "/console/segments"):
            page.goto(f"{running.dmp}{path}")
            page.wait_for_load_state("networkidle")
            page.wait_for_function(
                "[...document.querySelectorAll('figure.chart')].every(f => f.dataset.state)"
            )
            assert page.locator("figure.chart[data-state=failed]").count() == 0, path
        page.goto(f"{running.dmp}/console/dmp")
        assert "loss rate" in page.content()
        funnel = page.locator("figure.chart[data-source*='name=funnel&minutes']").first
        funnel.wait_for()
        page.wait_for_function(  # the chart's script has fetched and drawn it (or failed)
            "[...document.querySelectorAll('figure.chart')].every(f => f.dataset.state)"
        )
        assert funnel.get_attribute("data-state") == "drawn"
        page.goto(f"{running.dmp}/console/segments")
        assert page.locator("table.heat td[class^=heat-]").count() >= 2  # the overlap
        assert page.locator("text=Last export of each segment").count() == 1
