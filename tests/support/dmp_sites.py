"""Small HTTP sites for the DMP's browser tests: a partner that cookies the browser and
redirects it to the DMP's callback, a publisher's pages, and the IAB's reference packages
(``tests/reference/node_modules``) served to those pages as ES modules."""

from __future__ import annotations

import mimetypes
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

Route = Callable[[BaseHTTPRequestHandler], None]
NODE_MODULES = Path(__file__).resolve().parent.parent / "reference" / "node_modules"


class Stub:
    """A tiny HTTP server on a thread: ``routes`` maps a path to a handler function (a path
    ending in ``/`` takes every path under it); ``hits`` counts the requests per path,
    ``requests`` keeps each one's path and query."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.hits: Counter[str] = Counter()
        self.requests: list[str] = []
        self.routes = routes
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                stub.hits[path] += 1
                stub.requests.append(self.path)
                routes = stub.routes
                route = routes.get(path) or next(
                    (r for p, r in routes.items() if p.endswith("/") and path.startswith(p)), None
                )
                if route is None:
                    self.send_error(404)
                else:
                    route(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def answer(handler: BaseHTTPRequestHandler, body: bytes, content_type: str) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
    handler.wfile.write(body)


def pixel(handler: BaseHTTPRequestHandler) -> None:
    answer(handler, b"GIF89a", "image/gif")


def page(html: str) -> Route:
    """A route answering ``html``."""
    return lambda handler: answer(handler, html.encode(), "text/html; charset=utf-8")


def reference_files(handler: BaseHTTPRequestHandler) -> None:
    """``/node_modules/<path>``: a file of the reference packages (JavaScript as
    ``text/javascript``, as module scripts need); 404 outside them."""
    relative = unquote(urlsplit(handler.path).path).removeprefix("/node_modules/")
    path = (NODE_MODULES / relative).resolve()
    if not path.is_relative_to(NODE_MODULES) or not path.is_file():
        handler.send_error(404)
        return
    kind = "text/javascript" if path.suffix in {".js", ".mjs"} else mimetypes.guess_type(path)[0]
    answer(handler, path.read_bytes(), kind or "application/octet-stream")


def partner_stub(name: str, issued: dict[str, str], sealer: Callable[[str], str]) -> Stub:
    """A partner: keeps its own cookie, redirects to the DMP callback with its ID; also
    answers ``/other-tag.gif`` and ``/vendor-tag.gif``, a client's other tags it serves."""

    def sync(handler: BaseHTTPRequestHandler) -> None:
        query = dict(parse_qsl(urlsplit(handler.path).query))
        cookies = dict(
            part.strip().split("=", 1)
            for part in (handler.headers.get("Cookie") or "").split(";")
            if "=" in part
        )
        uid = cookies.get("puid") or f"{name}-{len(issued) + 1}"
        issued[name] = uid
        callback = query["redir"].replace(query["macro"], sealer(uid))
        handler.send_response(302)
        handler.send_header("Set-Cookie", f"puid={uid}; Path=/; Max-Age=3600")
        handler.send_header("Location", callback)
        handler.end_headers()

    return Stub({"/sync": sync, "/other-tag.gif": pixel, "/vendor-tag.gif": pixel})
