"""The edge in tests: nginx with a rendered edge directory, keep-alive clients, the admin
API and the edge's matches log."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pwd
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from cookiematch.edge.layout import MATCHES_LOG
from cookiematch.edge.render import Rendered

from conftest import port_open
from support.configs import ADMIN_TOKEN
from support.tools import unavailable

NGINX = "/usr/sbin/nginx"
LUA_MODULE = "/usr/lib/nginx/modules/ngx_http_lua_module.so"
USER = pwd.getpwuid(os.geteuid()).pw_name
"""nginx's workers run as the test's user (not nginx's default) to re-read the snapshot."""
HOP_HEADERS = frozenset({"date", "server", "connection", "keep-alive"})
"""Headers each server writes for itself (nginx in front rewrites them all)."""
Headers = list[tuple[str, str]]
Answer = tuple[int, Headers, bytes]


def require_nginx() -> None:
    if not (os.path.exists(NGINX) and os.path.exists(LUA_MODULE)):
        unavailable("nginx and libnginx-mod-http-lua are not installed (make system-deps)")


class Client:
    """Keep-alive connections to the server and to the edge."""

    def __init__(self, tls_ports: frozenset[int] = frozenset()) -> None:
        self._connections: dict[int, http.client.HTTPConnection] = {}
        self._tls_ports = tls_ports

    def send(self, port: int, method: str, target: str, headers: Headers) -> Answer:
        for attempt in (0, 1):
            connection = self._connections.get(port)
            if connection is None:
                if port in self._tls_ports:
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
                    connection = http.client.HTTPSConnection(
                        "127.0.0.1", port, timeout=10, context=context
                    )
                else:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                self._connections[port] = connection
            try:
                connection.putrequest(method, target, skip_accept_encoding=True)
                for name, value in headers:
                    connection.putheader(name, value)
                connection.endheaders()
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                del self._connections[port]
                if attempt:
                    raise
                continue
            if response.getheader("connection", "").lower() == "close":
                connection.close()
                del self._connections[port]
            kept = [
                (name.lower(), _without_new_id(name.lower(), value))
                for name, value in response.getheaders()
                if name.lower() not in HOP_HEADERS
            ]
            return response.status, sorted(kept), body
        raise AssertionError("unreachable")

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()


def _without_new_id(name: str, value: str) -> str:
    """A Set-Cookie without its value (the set-cookie hop draws a new browser ID each time)."""
    return value.partition(";")[2] if name == "set-cookie" else value


@contextlib.contextmanager
def running_nginx(rendered: Rendered, port: int) -> Iterator[None]:
    """nginx with a rendered configuration, in its output directory, until the block ends."""
    out = rendered.conf.parent
    nginx = subprocess.Popen(
        [NGINX, "-p", str(out), "-c", str(rendered.conf), "-e", str(out / "logs/error.log"),
         "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            if nginx.poll() is not None or time.monotonic() > deadline:
                error = (out / "logs/error.log").read_text(errors="replace")
                raise RuntimeError(f"nginx did not start: {error}")
            time.sleep(0.05)
        yield
    finally:
        nginx.terminate()
        nginx.wait(10)


def admin_put(port: int, path: str, body: dict[str, object]) -> int:
    """``PUT`` an admin API body to the server on ``port``; its status."""
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("PUT", path, json.dumps(body), headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


MATCHES_FLUSH_SECONDS = 1.2
"""nginx writes the buffered matches log at most a second after a line (``flush=1s``)."""


def matches_logged(out: Path) -> int:
    """The lines of the matches log of the edge in ``out`` written so far (nginx buffers it
    for up to a second: ``matches_flushed``)."""
    log = out / MATCHES_LOG
    return log.read_bytes().count(b"\n") if log.exists() else 0


def matches_flushed(out: Path) -> int:
    """The lines of the matches log of the edge in ``out`` once nginx has written every line
    of the match tags answered before this call."""
    time.sleep(MATCHES_FLUSH_SECONDS)
    return matches_logged(out)
