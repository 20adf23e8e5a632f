"""A small buyer (and exchange) over real HTTP that follows the protocol except for one
deliberate ``flaw``: each flaw breaks one rule the kit checks."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from cookiematch.protocol.pixel import TRANSPARENT_GIF

EXCHANGE = "https://exchange.example/pixel"
GIF_2X2 = TRANSPARENT_GIF[:6] + b"\x02\x00\x02\x00" + TRANSPARENT_GIF[10:]
LEAKED = "QUJDREVGR0hJSktMTU5PUA"
SEED_ERROR_3 = "http://ad.network.com/pixel?id=&google_error=3"


class Handler(BaseHTTPRequestHandler):
    flaw = ""

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _pixel(self, params: dict[str, str]) -> None:
        flaw = self.flaw
        if flaw == "500" and params.get("google_error") == "5":
            return self._send(500, [("Content-Type", "text/plain")], b"unknown error\n")
        if flaw == "strict_gid" and params.get("google_gid", "").startswith("!"):
            return self._send(400, [("Content-Type", "text/plain")], b"bad gid\n")
        if flaw == "slow":
            time.sleep(1.0)
        headers = [("Content-Type", "text/html" if flaw == "html" else "image/gif")]
        opted_out = params.get("google_error") == "1"
        known = "uid=" in self.headers.get("Cookie", "")
        if flaw == "cookie_once":  # not a flaw: a cookie (sent back over http) set once
            if not known and not opted_out:
                headers.append(("Set-Cookie", "uid=abc; Path=/; SameSite=None"))
        elif flaw != "no_cookie" and (not opted_out or flaw == "cookie_on_opt_out"):
            headers.append(("Set-Cookie", "uid=abc; Path=/; SameSite=None; Secure"))
        self._send(200, headers, GIF_2X2 if flaw == "big" else TRANSPARENT_GIF)

    def _push(self, raw_query: str) -> None:
        raw = dict(p.partition("=")[::2] for p in raw_query.split("&"))
        push = unquote(raw.get("google_push", ""))
        if self.flaw == "push_pixel":
            return self._pixel({})
        if self.flaw == "push_changed":
            push = push[:-1] + ("A" if push[-1:] != "A" else "B")
        base = "http://elsewhere.example/pixel" if self.flaw == "push_elsewhere" else EXCHANGE
        location = f"{base}?google_nid=dsp&google_push={quote(push, safe='-_')}"
        if self.flaw == "push_bad_hm":
            location += "&google_hm=not%20base64!"
        headers = [("Location", location), ("Set-Cookie", "uid=abc; SameSite=None; Secure")]
        self._send(302, headers)

    def _exchange(self) -> None:
        """A broken exchange: every match tag gets error 3; with the flaw ``leaky``, the
        browser's cookie value is its gid for every buyer."""
        if self.flaw != "leaky":
            return self._send(302, [("Location", SEED_ERROR_3)])
        cookie = self.headers.get("Cookie", "").partition("=")[2]
        if not cookie:
            location = SEED_ERROR_3
            return self._send(302, [("Location", location), ("Set-Cookie", f"id={LEAKED}")])
        location = f"http://ad.network.com/pixel?id=&google_gid={cookie}&google_cver=1"
        self._send(302, [("Location", location)])

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/pixel":
            return self._exchange()
        if parts.path == "/push":
            return self._push(parts.query)
        self._pixel(dict(parse_qsl(parts.query, keep_blank_values=True)))

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = json.loads(body)
        flaw = self.flaw
        if flaw == "bid_500":
            return self._send(500, [("Content-Type", "text/plain")], b"oops\n")
        if flaw == "bid_slow":
            time.sleep(1.0)
        rid = "other" if flaw == "bid_wrong_id" else request["id"]
        impid = "9" if flaw == "bid_wrong_imp" else request["imp"][0]["id"]
        answer = {"id": rid, "seatbid": [{"bid": [{"id": "b1", "impid": impid, "price": 1.5}]}]}
        payload = b"OK" if flaw == "bid_not_json" else json.dumps(answer).encode()
        self._send(200, [("Content-Type", "application/json")], payload)


@contextlib.contextmanager
def serving(flaw: str) -> Iterator[str]:
    """The base URL of a server with ``flaw`` ("" for none), stopped on exit."""
    handler = type("FlawedHandler", (Handler,), {"flaw": flaw})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
