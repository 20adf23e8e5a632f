"""The DMP sync funnel, demonstrated: simulated browsers visit a client site whose container tag
fans out to four partners, one of them lossy, and the funnel is read back from the admin API.
The partners are stubs on loopback (``PartnerStub``; one may pass its data in-band), and
``GidRelay`` stands for a buyer's match redirect that hands the exchange's gid to the DMP. The
data half (ingestion, segments, exports) is ``demo/dmp_data.py``.

The scenario, as ``make demo`` runs it (``demo/dmp_data.py``, ``run_dmp_stories``)::

    with partner_stubs() as stubs:                       # four partner servers on loopback
        config = write_dmp_demo_config(tmp, dmp_port, stubs)
        ... start `cookiematch serve --config <config> --role dmp` ...
        report = run_dmp_scenario(f"http://dmp.localhost:{dmp_port}", stubs)
        print_funnel(report)

``run_dmp_demo()`` runs the funnel scenario alone, with its own server process, and returns
an exit status (``python -m cookiematch.demo.dmp_story``).
"""

from __future__ import annotations

import base64
import contextlib
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import msgspec

from cookiematch.demo.browser import SimulatedBrowser
from cookiematch.dmp.funnel import FunnelReport
from cookiematch.dmp.model import IdFormat, Partner
from cookiematch.dmp.partner_ids import seal
from cookiematch.protocol.pixel import TRANSPARENT_GIF
from cookiematch.protocol.templates import SyncTemplate
from cookiematch.roots.dmp import FUNNEL_FLUSH_SECONDS

DMP_DEMO_TOKEN = "demo-dmp-admin-token"
CLIENT = "shop"
STORE_DEADLINE_MS = 5000
"""A browser request's store calls in the demo's DMP get 5 s, not a pixel's 50 ms: the funnel
must count every stored callback, and a disk's fsync now and then takes longer than 50 ms
(a callback over its deadline is answered with the pixel but counted ``callback_failed``)."""
FUNNEL_SETTLE_SECONDS = 1.5 * FUNNEL_FLUSH_SECONDS
"""Between two reads of the funnel: longer than a worker's wait between writes of its counts."""


Answer = tuple[int, dict[str, str], bytes]


def _serve(answer: Callable[[str, str | None], Answer]) -> ThreadingHTTPServer:
    """A threaded HTTP server on a free loopback port: ``answer(query, cookie)`` for each GET."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            status, headers, body = answer(url.query, self.headers.get("Cookie"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _stop(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()


@dataclass
class PartnerStub:
    """A partner's sync endpoint: keeps its own cookie, redirects to the DMP callback with its
    ID (sealed as configured), except for the share of requests it drops (``drop_rate``).

    With ``inband`` (partner uid -> its key-values, in the order it ranks them), it sends the
    browser to the DMP's ``/inband/`` instead, with as many key-values as fit in
    ``inband_max_bytes`` of query string (the DMP's documented limit); ``values_cut`` counts
    those left out."""

    id: str
    uid_macro: str = "$UID"
    id_format: IdFormat = IdFormat.PLAIN
    key: bytes | None = None
    drop_rate: float = 0.0
    seed: int = 7
    priority: int = 0
    inband: Mapping[str, Sequence[tuple[str, str]]] | None = None
    inband_max_bytes: int = 1024
    port: int = 0
    issued: int = 0
    dropped: int = 0
    values_cut: int = 0
    _random: random.Random = field(init=False, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def sync_url(self) -> str:
        """The ``sync_url`` template the DMP is configured with for this stub."""
        return f"http://{self.id}.localhost:{self.port}/sync?redir=${{CALLBACK_URL}}"

    def _seal(self, uid: str) -> str:
        if self.id_format is IdFormat.PLAIN:
            return uid
        partner = Partner(self.id, SyncTemplate.compile("http://x.example/${DMP_UID}"),
                          id_format=self.id_format, id_key=self.key)  # fmt: skip
        return seal(partner, uid, time.time())

    def _inband_url(self, callback: str, uid: str) -> str:
        """The callback as an in-band redirect carrying the uid's key-values that fit."""
        assert self.inband is not None
        url = callback.replace("/callback/", "/inband/", 1)
        query = urlsplit(url).query
        pairs = list(self.inband.get(uid, ()))
        fitted: list[str] = []
        for key, value in pairs:
            more = [*fitted, f"{key}:{value}"]
            if len(f"{query}&kv={','.join(more)}") > self.inband_max_bytes:
                break
            fitted = more
        self.values_cut += len(pairs) - len(fitted)
        return f"{url}&kv={','.join(fitted)}"

    def answer(self, query: str, cookie: str | None) -> Answer:
        """Status, headers and body for one sync request."""
        params = dict(parse_qsl(query))
        redir = params.get("redir")
        if redir is None:
            return 400, {}, b"redir missing\n"
        jar = dict(p.strip().split("=", 1) for p in (cookie or "").split(";") if "=" in p)
        uid = jar.get("puid")
        headers = {"Content-Type": "image/gif", "Cache-Control": "no-store"}
        if uid is None:
            self.issued += 1
            uid = f"{self.id}-{self.issued:05d}"
            headers["Set-Cookie"] = f"puid={uid}; Path=/; Max-Age=31536000"
        if self._random.random() < self.drop_rate:
            self.dropped += 1  # the redirect is lost (timeout, closed tab, ad blocker...)
            return 200, headers, TRANSPARENT_GIF
        location = redir.replace(self.uid_macro, self._seal(uid))
        if self.inband is not None:
            location = self._inband_url(location, uid)
        headers["Location"] = location
        return 302, headers, b""

    def start(self) -> None:
        self._server = _serve(self.answer)
        self.port = self._server.server_address[1]

    def stop(self) -> None:
        _stop(self._server)


@dataclass
class GidRelay:
    """A buyer's match redirect (its ``redirect_url`` at the exchange) that sends the browser on
    to the DMP with the gid the exchange gave it: the DMP partner whose IDs are that buyer's
    gids, as an exchange user-list export needs them. The DMP's sync URL for it is the
    exchange's match tag with the callback as an extra parameter (``redir=${CALLBACK_URL}``),
    which the exchange passes through to this redirect."""

    uid_macro: str = "$UID"
    port: int = 0
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://relay.localhost:{self.port}/match"

    def answer(self, query: str, cookie: str | None) -> Answer:
        params = dict(parse_qsl(query))
        gid, redir = params.get("google_gid"), params.get("redir")
        if gid is None or redir is None:  # an error code from the exchange: nothing to relay
            return 200, {"Content-Type": "image/gif"}, TRANSPARENT_GIF
        return 302, {"Location": redir.replace(self.uid_macro, quote(gid, safe=""))}, b""

    def start(self) -> None:
        self._server = _serve(self.answer)
        self.port = self._server.server_address[1]

    def stop(self) -> None:
        _stop(self._server)


def default_stubs() -> list[PartnerStub]:
    """Analytics (plain ID), email (signed), order management (plain), a DSP that loses 30 %."""
    return [
        PartnerStub("analytics", priority=40),
        PartnerStub("email", "[EMAIL_ID]", IdFormat.SIGNED, b"e" * 32, priority=30),
        PartnerStub("orders", priority=20),
        PartnerStub("dsp", "%%DSP_UID%%", IdFormat.ENCRYPTED, b"d" * 32, 0.30, priority=10),
    ]


class Served(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=Served)


@contextlib.contextmanager
def serving(servers: list[S]) -> Iterator[list[S]]:
    """Start the stubs (free loopback ports); stop them on exit."""
    for server in servers:
        server.start()
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def partner_stubs(
    stubs: list[PartnerStub] | None = None,
) -> contextlib.AbstractContextManager[list[PartnerStub]]:
    """Start the partner stubs (``default_stubs()`` if none given); stop them on exit."""
    return serving(stubs if stubs is not None else default_stubs())


def write_dmp_demo_config(
    directory: Path,
    port: int,
    stubs: list[PartnerStub],
    *,
    token: str = DMP_DEMO_TOKEN,
    settings: Sequence[str] = (),
    tables: str = "",
) -> Path:
    """A DMP on ``127.0.0.1:port``, reached as ``dmp.localhost:port``, whose client ``shop``
    syncs with ``stubs``; ``settings`` are more ``[dmp]`` keys, ``tables`` more TOML tables
    (the data half's partners, clients, segments and destinations: ``demo/dmp_data.py``)."""
    shop_partners = ", ".join(f'"{stub.id}"' for stub in stubs)
    lines = [
        "[store]", f'url = "sqlite:///{directory / "dmp.db"}"', "",
        "[dmp]", f'listen = "127.0.0.1:{port}"', f'public_url = "http://dmp.localhost:{port}"',
        f'admin_token = "{token}"', "max_syncs_per_page = 4", "cookie_secure = false",
        f"store_deadline_ms = {STORE_DEADLINE_MS}", *settings, "",
        "[[dmp.clients]]", f'id = "{CLIENT}"', f"partners = [{shop_partners}]", "",
    ]  # fmt: skip
    for stub in stubs:
        lines += [
            "[[dmp.partners]]",
            f'id = "{stub.id}"',
            f'sync_url = "{stub.sync_url()}"',
            f'uid_macro = "{stub.uid_macro}"',
            f"priority = {stub.priority}",
            f'id_format = "{stub.id_format.value}"',
        ]
        if stub.key is not None:
            lines.append(f'id_key = "{base64.b64encode(stub.key).decode()}"')
        lines.append("")
    path = directory / "dmp.toml"
    path.write_text("\n".join(lines) + "\n" + tables)
    return path


def _page_view(browser: SimulatedBrowser, base: str) -> int:
    """One page of the client, as its container tag runs it: the tag, ``/sync``, then every
    sync pixel followed through the partner's redirect to the DMP callback."""
    browser.get(f"{base}/tag.js?client={CLIENT}")
    sync = browser.get(f"{base}/sync?client={CLIENT}")
    pixels: list[str] = msgspec.json.decode(sync.body).get("pixels", []) if sync.body else []
    for pixel in pixels:
        browser.follow(pixel)
    return len(pixels)


def _loopback(url: str) -> str:
    """``http://dmp.localhost:8720`` -> ``http://127.0.0.1:8720`` (for plain HTTP clients)."""
    parts = urlsplit(url)
    if (parts.hostname or "").endswith(".localhost"):
        return (
            f"{parts.scheme}://127.0.0.1:{parts.port}"
            if parts.port
            else f"{parts.scheme}://127.0.0.1"
        )
    return url


def run_dmp_scenario(
    base_url: str,
    stubs: list[PartnerStub],
    *,
    browsers: int = 200,
    return_visits: float = 0.5,
    token: str = DMP_DEMO_TOKEN,
    seed: int = 11,
    out: Callable[[str], None] = print,
) -> FunnelReport:
    """Drive simulated browsers through the client site and return the DMP's funnel.

    Each browser views one page; a share (``return_visits``) comes back for a second page,
    where only partners whose callback was lost are synced again.
    """
    base = base_url.rstrip("/")
    chooser = random.Random(seed)
    first_uid = ""
    for number in range(browsers):
        browser = SimulatedBrowser()
        try:
            fired = _page_view(browser, base)
            if number == 0:
                first_uid = browser.jar.get(urlsplit(base).hostname or "", {}).get("dmp_id", "")
                out(f"first browser: DMP ID {first_uid}, {fired} sync pixels fired")
            if chooser.random() < return_visits:
                _page_view(browser, base)
        finally:
            browser.close()
    auth = {"Authorization": f"Bearer {token}"}
    admin = _loopback(base)
    if first_uid:
        profile = httpx.get(f"{admin}/admin/v1/profiles/{first_uid}", headers=auth, timeout=5)
        out(f"its profile: {profile.text}")
    return settled_funnel(lambda: _read_funnel(admin, auth))


def _read_funnel(admin: str, auth: dict[str, str]) -> FunnelReport:
    response = httpx.get(f"{admin}/admin/v1/funnel", headers=auth, timeout=5)
    response.raise_for_status()
    return msgspec.json.decode(response.content, type=FunnelReport)


def settled_funnel(read: Callable[[], FunnelReport], *, wait: float = 10.0) -> FunnelReport:
    """The funnel once it stops changing: workers write their counts every second (a read
    flushes only its own worker's), so two reads a flush apart that agree hold every count."""
    deadline = time.monotonic() + wait
    previous: FunnelReport | None = None
    while True:
        report = read()
        if report == previous or time.monotonic() > deadline:
            return report
        previous = report
        time.sleep(FUNNEL_SETTLE_SECONDS)


def print_funnel(report: FunnelReport, out: Callable[[str], None] = print) -> None:
    """The funnel as two small tables (rows where nothing was counted left out)."""
    out(f"{'partner':<12}{'pixels':>8}{'callbacks':>11}{'rejected':>10}{'loss':>7}{'loss %':>8}")
    for name, row in report.partners.items():
        c = row.counts
        if not any(c.values()):
            continue
        out(f"{name:<12}{c['pixels']:>8}{c['callbacks']:>11}{c['rejected']:>10}"
            f"{row.loss:>7}{row.loss_rate:>8.1%}")  # fmt: skip
    out(f"{'client':<12}{'tag.js':>8}{'loaded':>8}{'pixels':>8}{'callbacks':>11}{'loss %':>8}")
    for name, row in report.clients.items():
        c = row.counts
        if not any(c.values()):
            continue
        out(f"{name:<12}{c['tag_js']:>8}{c['tags_loaded']:>8}{c['pixels']:>8}"
            f"{c['callbacks']:>11}{row.loss_rate:>8.1%}")  # fmt: skip


def run_dmp_story(directory: Path, *, browsers: int = 200) -> FunnelReport:
    """Start the partner stubs and a DMP serving them, run the scenario, print the funnel."""
    from cookiematch.demo.stack import free_port, running

    with partner_stubs() as stubs:
        port = free_port()
        config = write_dmp_demo_config(directory, port, stubs)
        with running(config, {}, port, directory / "dmp.log"):
            print(f"DMP on http://dmp.localhost:{port}; partners: {', '.join(s.id for s in stubs)}")
            report = run_dmp_scenario(f"http://dmp.localhost:{port}", stubs, browsers=browsers)
    print_funnel(report)
    return report


def funnel_as_expected(report: FunnelReport) -> bool:
    """The lossy partner lost callbacks; the reliable ones lost none."""
    return report.partners["dsp"].loss > 0 and report.partners["analytics"].loss == 0


def run_dmp_demo(browsers: int = 200) -> int:
    """The DMP story alone; exit status 0 when the funnel looks as expected."""
    with tempfile.TemporaryDirectory(prefix="cookiematch-dmp-demo-") as tmp:
        report = run_dmp_story(Path(tmp), browsers=browsers)
    return 0 if funnel_as_expected(report) else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run_dmp_demo())
