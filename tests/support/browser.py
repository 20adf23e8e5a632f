"""Headless Debian chromium for cross-site cookie tests, and a small recording site server.

Chromium is Debian's (``/usr/bin/chromium``), driven by playwright with ``executable_path``:
nothing is downloaded. Without it the tests skip locally and FAIL under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cookiematch.protocol.pixel import TRANSPARENT_GIF

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # *.localhost names always reach loopback, whatever the system resolver says
    "--host-resolver-rules=MAP *.localhost 127.0.0.1",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (make system-deps installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def allow_third_party_cookies(profile: Path) -> None:
    """Profile preferences of a browser that accepts third-party cookies (the setting the
    cross-site flows of cookie matching need; users who block them get google_error=3)."""
    preferences = {"profile": {"cookie_controls_mode": 0, "block_third_party_cookies": False}}
    default = profile / "Default"
    default.mkdir(parents=True, exist_ok=True)
    (default / "Preferences").write_text(json.dumps(preferences))


@contextmanager
def headless_chromium(*, third_party_cookies: bool = True) -> Iterator[Any]:
    """A browser context on a fresh profile that accepts third-party cookies, or (with
    ``third_party_cookies=False``) one that blocks them, as chromium's default settings do.
    """
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        if third_party_cookies:
            allow_third_party_cookies(Path(profile))
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=executable, args=CHROMIUM_ARGS, headless=True
            )
            try:
                yield context
            finally:
                context.close()


@dataclass
class Hit:
    host: str
    path: str
    cookie: str | None


@dataclass
class RecordingSite:
    """One threaded HTTP server answering every ``*.localhost`` name it is reached by.

    ``pages`` maps a path to HTML; any other path answers a GIF (setting the cookie named in
    ``cookie_for``, if any) and every request is recorded in ``hits``.
    """

    pages: dict[str, str] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    set_cookie: Callable[[str], str | None] = lambda path: None
    port: int = 0

    def handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits.append(
                    Hit(self.headers.get("Host", ""), self.path, self.headers.get("Cookie"))
                )
                page = site.pages.get(self.path.split("?", 1)[0])
                if page is not None:
                    body = page.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                else:
                    body = TRANSPARENT_GIF
                    self.send_response(200)
                    self.send_header("Content-Type", "image/gif")
                    cookie = site.set_cookie(self.path)
                    if cookie:
                        self.send_header("Set-Cookie", cookie)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@contextmanager
def serve_site(site: RecordingSite) -> Iterator[RecordingSite]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), site.handler())
    site.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
