"""Cross-site cookie matching in a real headless chromium.

A publisher page on ``publisher.localhost`` embeds a buyer's match tag served by the exchange
on ``exchange.localhost``; the exchange redirects to the buyer on ``buyer.localhost``. Three
sites, one browser, third-party cookies as the browser ships them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import ServerProcess, free_port
from support.browser import RecordingSite, headless_chromium, serve_site
from support.configs import write_exchange_config

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
