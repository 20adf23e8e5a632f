"""ExampleNews: the publisher site of the demo, a static page with one ad slot in an iframe.

The ad slot is the exchange's ``/ad`` document; served from a thread of the demo process.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = """<!doctype html>
<html lang="en"><meta charset="utf-8"><title>ExampleNews</title>
<h1>ExampleNews</h1>
<p>Today's headlines.</p>
<iframe src="{ad_url}" width="300" height="250" title="advertisement"></iframe>
</html>
"""


def page(exchange_url: str, publisher: str, slot: str) -> str:
    ad_url = f"{exchange_url}/ad?pub={publisher}&slot={slot}"
    return PAGE.format(ad_url=html.escape(ad_url, quote=True))


@contextmanager
def serve_publisher(exchange_url: str, publisher: str = "examplenews") -> Iterator[int]:
    """Serve ExampleNews on a free loopback port; yields the port."""
    document = page(exchange_url, publisher, "top").encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/", "/index.html"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
