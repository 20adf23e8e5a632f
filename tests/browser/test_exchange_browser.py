"""Cross-site cookie matching in a real headless chromium.

A publisher page on ``publisher.localhost`` embeds a buyer's match tag served by the exchange
on ``exchange.localhost``; the exchange redirects to the buyer on ``buyer.localhost``. Three
sites, one browser, third-party cookies as the browser ships them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from cookiematch.protocol.cookies import parse_browser_id

from conftest import ServerProcess, free_port
from support.browser import RecordingSite, headless_chromium, serve_site
from support.configs import serve_argv, write_exchange_config

pytestmark = pytest.mark.browser


def buyer_hits(site: RecordingSite) -> list[dict[str, list[str]]]:
    return [
        parse_qs(urlsplit(hit.path).query, keep_blank_values=True)
        for hit in site.hits
        if hit.host.startswith("buyer.localhost") and hit.path.startswith("/cm")
    ]


def test_match_tag_sets_verifies_and_matches_across_sites(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    site = RecordingSite()
    with serve_site(site):
        exchange_port = free_port()
        buyers = (
            '[[exchange.buyers]]\nnid = "finest_dsp"\n'
            f'redirect_url = "http://buyer.localhost:{site.port}/cm?src=cm"\n'
        )
        config = write_exchange_config(tmp_path, exchange_port, buyers=buyers, user_lists="")
        argv = [sys.executable, "-m", "cookiematch", "serve", "--config", str(config)]
        start_server(argv=argv, port=exchange_port)
        tag = (
            f"http://exchange.localhost:{exchange_port}/pixel"
            "?google_nid=finest_dsp&google_cm&google_sc&slot=top"
        )
        site.pages["/news.html"] = f'<!doctype html><title>ExampleNews</title><img src="{tag}">'
        page_url = f"http://publisher.localhost:{site.port}/news.html"

        with headless_chromium() as context:
            page = context.new_page()
            page.goto(page_url)
            page.wait_for_load_state("networkidle")
            first = buyer_hits(site)
            assert len(first) == 1, site.hits
            assert first[0]["src"] == ["cm"] and first[0]["slot"] == ["top"], first
            assert first[0]["google_cver"] == ["1"]
            gid = first[0]["google_gid"][0]
            exchange_cookies = [c for c in context.cookies() if c["name"] == "cm_id"]
            assert len(exchange_cookies) == 1
            assert exchange_cookies[0]["sameSite"] == "None"
            assert exchange_cookies[0]["httpOnly"] and exchange_cookies[0]["secure"]

            page.goto(page_url)
            page.wait_for_load_state("networkidle")
            second = buyer_hits(site)
            assert len(second) == 2
            assert second[1]["google_gid"] == [gid]

        with headless_chromium(third_party_cookies=False) as blocking:
            # A browser that blocks third-party cookies: the verification hop comes back
            # without the cookie, and the buyer gets google_error=3.
            page = blocking.new_page()
            page.goto(page_url)
            page.wait_for_load_state("networkidle")
            last = buyer_hits(site)[-1]
            assert last["google_error"] == ["3"]
            assert "google_gid" not in last
            assert [c for c in blocking.cookies() if c["name"] == "cm_id"] == []


def test_another_site_cannot_undo_an_opt_out_but_the_page_can(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """A third-party page that auto-submits the undo form to the exchange is refused (its
    POST carries the SameSite=None exchange cookie but not the page's Strict token cookie);
    the button on the exchange's own page works."""
    site = RecordingSite()
    with serve_site(site):
        exchange_port = free_port()
        buyers = (
            '[[exchange.buyers]]\nnid = "finest_dsp"\n'
            f'redirect_url = "http://buyer.localhost:{site.port}/cm?src=cm"\n'
        )
        config = write_exchange_config(tmp_path, exchange_port, buyers=buyers, user_lists="")
        start_server(argv=serve_argv(config, "exchange"), port=exchange_port)
        exchange = f"http://exchange.localhost:{exchange_port}"
        tag = f"{exchange}/pixel?google_nid=finest_dsp&google_cm&google_sc"
        site.pages["/news.html"] = f'<!doctype html><title>News</title><img src="{tag}">'
        site.pages["/undo.html"] = (
            "<!doctype html><title>Win a prize</title>"
            f'<form id=f method=post action="{exchange}/optout">'
            '<input type=hidden name=csrf value="guess"><input name=action value=undo></form>'
            "<script>document.getElementById('f').submit()</script>"
        )

        def exchange_cookie(context: Any) -> str:
            found = [c["value"] for c in context.cookies() if c["name"] == "cm_id"]
            assert len(found) == 1
            return str(found[0])

        with headless_chromium() as context:
            page = context.new_page()
            page.goto(f"http://publisher.localhost:{site.port}/news.html")
            page.wait_for_load_state("networkidle")
            matched = exchange_cookie(context)
            assert parse_browser_id(matched) is not None

            page.goto(f"{exchange}/optout")
            assert "not opted out" in page.inner_text("#state")
            page.click("button[name=action]")
            page.wait_for_load_state("load")
            assert "is opted out" in page.inner_text("#state")
            assert exchange_cookie(context) == "OPT_OUT"

            page.goto(f"http://attacker.localhost:{site.port}/undo.html")
            page.wait_for_url(f"{exchange}/optout")
            assert "did not come from the opt-out page" in page.content()
            assert exchange_cookie(context) == "OPT_OUT"

            page.goto(f"{exchange}/optout")
            page.click("button[name=action]")
            page.wait_for_load_state("load")
            fresh = exchange_cookie(context)
            assert parse_browser_id(fresh) is not None and fresh != matched
