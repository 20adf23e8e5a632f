"""A buyer's opt-out webhook for the tests: a real HTTP server that verifies each notice's
signature with the buyer's secret and records what it received."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cookiematch.protocol.optout_notice import (
    SIGNATURE_HEADER,
    OptOutNotice,
    decode_notice,
    verify,
)


@dataclass
class NoticeReceiver:
    """Answers ``status`` (after ``delay`` seconds) to every POST; ``notices`` holds those
    whose signature verified, ``refused`` counts the others (answered 401)."""

    secret: bytes
    status: int = 200
    delay: float = 0.0
    now: Callable[[], float] = time.time
    notices: list[OptOutNotice] = field(default_factory=list)
    refused: int = 0
    posts: int = 0
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/optout"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(receiver.delay)
                signed = verify(
                    receiver.secret, body, self.headers.get(SIGNATURE_HEADER), receiver.now()
                )
                notice = decode_notice(body)
                with receiver._lock:
                    receiver.posts += 1
                    if signed and notice is not None:
                        status = receiver.status
                        if 200 <= status < 300:
                            receiver.notices.append(notice)
                    else:
                        receiver.refused += 1
                        status = 401
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def ids(self) -> list[str]:
        with self._lock:
            return [notice.id for notice in self.notices]


@contextlib.contextmanager
def receiving(receiver: NoticeReceiver, port: int = 0) -> Iterator[NoticeReceiver]:
    """Serve ``receiver`` on ``port`` (0: a free one) until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", port), receiver.handler())
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
