"""The edge (nginx + ``cookiematch_edge.lua``, written by ``cookiematch edge render``) in front
of a real ``cookiematch serve``: for the seed vectors and for thousands of generated match
tags, a request through the edge is answered with the status, headers and body the server
answers it with directly; the edge answers the common case itself (its access log says no
upstream), and proxies the rest to the server unchanged. One nginx and one server for the
module, on free ports, nginx in its own prefix directory.
"""

from __future__ import annotations

import datetime
import json
import re
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cookiematch.cli.main import main
from cookiematch.config import load_config
from cookiematch.edge.layout import COLLECTOR_STATE, MATCHES_LOG
from cookiematch.edge.render import Rendered, render
from cookiematch.protocol.cookies import format_browser_id
from cookiematch.protocol.userid import UserIdCipher

from conftest import free_port
from support.configs import ADMIN_TOKEN, KEY_V1, write_exchange_config
from support.edge import (
    USER,
    Answer,
    Client,
    Headers,
    admin_put,
    matches_flushed,
    matches_logged,
    require_nginx,
    running_nginx,
)
from support.match_tags import BUYER_TABLES, BUYERS, cookie_headers, queries, vector_cases

FLUSH_SECONDS = 1.2
"""The access log is flushed every second (nginx.conf.in)."""
# what a browser leaves unencoded in a query (the rest is percent-encoded on the wire)
WIRE_SAFE = "&=%+;,/?:@!$'()*~._-"


@dataclass
class Stack:
    server_port: int
    edge_port: int
    rendered: Rendered
    access_log: Path
    config: Path


class AccessLog:
    """The lines nginx logged since the last ``new_lines`` (flushed within a second)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        time.sleep(FLUSH_SECONDS)  # what earlier requests logged is in the file by now
        self._seen = self._size()

    def _size(self) -> int:
        return self._path.stat().st_size if self._path.exists() else 0

    def new_lines(self, expected: int) -> list[str]:
        deadline = time.monotonic() + 5
        while True:
            with self._path.open("rb") as f:
                f.seek(self._seen)
                lines = f.read().decode().splitlines()
            if len(lines) >= expected or time.monotonic() > deadline:
                self._seen += sum(len(line) + 1 for line in lines)
                return lines
            time.sleep(0.2)


def answered_at_edge(line: str) -> bool:
    return line.split(" ")[2] == "-"  # $upstream_addr: no upstream


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, start_module_server: object) -> Iterator[Stack]:
    require_nginx()
    directory = tmp_path_factory.mktemp("edge")
    port, edge_port = free_port(), free_port()
    out = directory / "edge"
    config = write_exchange_config(
        directory, port, buyers=BUYER_TABLES, extra_exchange=f'edge_dir = "{out}"'
    )
    rendered = render(
        load_config(config), out, listen=f"127.0.0.1:{edge_port}", workers="1", user=USER
    )
    argv = [sys.executable, "-m", "cookiematch", "serve", "--config", str(config)]
    start_module_server(argv=argv, port=port)  # type: ignore[operator]
    with running_nginx(rendered, edge_port):
        yield Stack(port, edge_port, rendered, out / "logs/access.log", config)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    c = Client()
    yield c
    c.close()


def both(
    stack: Stack,
    client: Client,
    method: str,
    target: str,
    headers: Headers,
    *,
    edge_port: int | None = None,
    scheme: str = "http",
) -> Answer:
    """The edge's answer, checked equal to the server's (which sees what nginx adds)."""
    edge = client.send(edge_port or stack.edge_port, method, target, headers)
    forwarded = [*headers, ("x-forwarded-proto", scheme)]
    direct = client.send(stack.server_port, method, target, forwarded)
    assert edge == direct, target
    return edge


# --- the rendered files ---------------------------------------------------------------------


def test_the_key_file_holds_derived_keys_only_readable_by_its_owner(stack: Stack) -> None:
    keys = stack.rendered.keys
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    text = keys.read_text()
    master = b"1" * 32
    assert master.hex() not in text and KEY_V1 not in text
    cipher = UserIdCipher({1: master})
    assert cipher.derive_key(1, "enc", "ad_network_xyz").hex() in text
    assert "limited" in stack.rendered.left  # under a rate: its match tags are the server's
    assert set(stack.rendered.answered) >= set(BUYERS)


def test_the_cli_renders_the_edge(tmp_path: Path) -> None:
    config = write_exchange_config(tmp_path, free_port(), buyers=BUYER_TABLES)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["edge", "render", "--config", str(config), "--out", str(out), "--listen", "127.0.0.1:9"],
    )
    assert result.exit_code == 0, result.output
    assert "left to the server: limited" in result.output
    assert {p.name for p in out.iterdir()} >= {"nginx.conf", "cookiematch_edge.lua", "edge.keys"}
    assert "listen 127.0.0.1:9;" in (out / "nginx.conf").read_text()


# --- same bytes -----------------------------------------------------------------------------


def test_the_seed_vectors_through_the_edge(stack: Stack, client: Client) -> None:
    """Each seed vector's match tag (its nid renamed to its buyer's) from a browser with a
    cookie is answered by the edge itself, as the server answers it; over http, with the
    vector's URL."""
    log = AccessLog(stack.access_log)
    browser_id = bytes(range(16))
    cipher = UserIdCipher({1: b"1" * 32})
    cases = vector_cases()
    assert len(cases) >= 6
    for i, case in enumerate(cases):
        scheme, _, rest = case["match_tag"].partition("://")
        query = rest.partition("?")[2].replace(f"google_nid={case['expected_tag']['nid']}", "")
        cookie = [("cookie", f"cm_id={format_browser_id(browser_id)}")]
        status, pairs, _ = both(stack, client, "GET", f"/pixel?google_nid=v{i}&{query}", cookie)
        assert status == 302
        if scheme != "http":
            continue
        gid = cipher.encrypt(browser_id, f"v{i}", case["response"]["cver"])
        expected = case["expected"].replace(case["response"]["gid"], gid)
        location = dict(pairs)["location"]
        if case["compare"] == "exact":
            assert location == expected, case["name"]
        else:
            assert sorted(location.partition("?")[2].split("&")) == sorted(
                expected.partition("?")[2].split("&")
            )
    lines = log.new_lines(len(cases))
    assert len(lines) == len(cases) and all(answered_at_edge(line) for line in lines), lines


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, Headers]:
    common = draw(st.booleans())
    headers = draw(cookie_headers(common))
    if not common and draw(st.integers(0, 9)) == 0:
        headers.append(("sec-gpc", draw(st.sampled_from(["1", "0"]))))
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD"]))
    return method, "/pixel?" + quote(draw(queries(common)), safe=WIRE_SAFE), headers


def test_generated_match_tags_through_the_edge(stack: Stack, client: Client) -> None:
    """Thousands of generated requests (about half the common case) are answered alike; a
    good share of them by the edge itself."""
    log = AccessLog(stack.access_log)
    sent = []

    @settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(requests())
    def answered_alike(request: tuple[str, str, Headers]) -> None:
        method, target, headers = request
        both(stack, client, method, target, headers)
        sent.append(target)

    answered_alike()
    lines = log.new_lines(len(sent))
    assert len(lines) == len(sent)
    at_edge = sum(answered_at_edge(line) for line in lines)
    assert 0.1 * len(sent) < at_edge < len(sent), at_edge  # HEAD, non-ASCII extras: proxied


def test_the_edges_shortcut_shapes_and_their_near_misses(stack: Stack, client: Client) -> None:
    """The edge reads the common query and cookie shapes without its general loops; each of
    them and each of the shapes just beside them (which it leaves to the loops, or to the
    server) is answered as the server answers it."""
    nid, browser = "ad_network_xyz", format_browser_id(bytes(range(16)))
    tail = f"google_nid={nid}&google_cm"
    queries = [
        tail, f"{tail}=", f"{tail}=1", f"{tail}=a=b&p=1", f"{tail}&p=1&q", f"{tail}&p=1&q=",
        f"{tail}&a=b=c", f"{tail}&&p=1", f"{tail}&p=1&", f"{tail}&=v", f"{tail}&p=1&=v",
        f"{tail}x&p=1", f"{tail}&google_other=1", f"{tail}&p=google_x", f"{tail}&p=v.~_,-",
        "google_nid=&google_cm&p=1", f"google_nid={nid}&p=1&google_cm", f"{tail}&p=%41",
        f"{tail}&p=a+b", f"{tail}&big=" + "v" * 1019, f"{tail}&big=" + "v" * 1020,
    ]  # fmt: skip
    cookies = [
        f"cm_id={browser}", f" cm_id={browser}", f"a=1;cm_id={browser}", f"a=1; cm_id={browser}",
        f"a=1;  cm_id={browser}", f"cm_id={browser};", f"cm_id={browser}; lang=en",
        f"cm_id={browser} ; lang=en", f'cm_id="{browser}"', f"xcm_id=1; cm_id={browser}",
        f"a=cm_id; cm_id={browser}", f"cm_id={browser}A", f"cm_id={browser[:-1]}", "cm_id=",
        f"cm_id ={browser}", f"cm_id={browser[:-1]}B", f"cm_id=*{browser[1:]}",
    ]  # fmt: skip
    log = AccessLog(stack.access_log)
    for query in queries:
        both(stack, client, "GET", f"/pixel?{query}", [("cookie", f"cm_id={browser}")])
    for cookie in cookies:
        both(stack, client, "GET", f"/pixel?{tail}&p=1", [("cookie", cookie)])
    lines = log.new_lines(len(queries) + len(cookies))
    assert len(lines) == len(queries) + len(cookies)
    assert answered_at_edge(lines[0]) and answered_at_edge(lines[len(queries)]), lines


def test_the_edge_answers_the_common_case_and_proxies_the_rest(
    stack: Stack, client: Client
) -> None:
    """A common-case match tag is answered at the edge; a pixel-matching push, an unknown
    buyer, a buyer under a rate, a HEAD, a privacy signal and the other routes reach the
    server, whose answers the edge passes on unchanged."""
    log = AccessLog(stack.access_log)
    cookie = ("cookie", f"cm_id={format_browser_id(bytes(16))}")
    common = "/pixel?google_nid=ad_network_xyz&google_cm&p=1"
    assert both(stack, client, "GET", common, [cookie])[0] == 302
    proxied = [
        ("GET", "/pixel?google_nid=ad_network_xyz&google_hm=AAECAw", [cookie]),
        ("GET", "/pixel?google_nid=unknown&google_cm", [cookie]),
        ("GET", "/pixel?google_nid=limited&google_cm", [cookie]),
        ("HEAD", common, [cookie]),
        ("GET", common + "&gdpr=1&gdpr_consent=x", [cookie]),
        ("GET", common, [cookie, ("sec-gpc", "1")]),
        ("GET", common, []),
        ("GET", "/pixel", [cookie]),
        ("GET", "/livez", []),
        ("GET", "/no/such/route?x=1", []),
    ]
    for method, target, headers in proxied:
        both(stack, client, method, target, headers)
    lines = log.new_lines(1 + len(proxied))  # the requests through the edge
    assert len(lines) == 1 + len(proxied), lines
    assert answered_at_edge(lines[0])
    upstream = f"127.0.0.1:{stack.server_port}"
    assert all(line.split(" ")[2] == upstream for line in lines[1:]), lines
    # $cm_maybe_match: the push, the privacy signal in the query, the HEAD and the other
    # routes are proxied without entering Lua
    entered = [line.rsplit(" ", 1)[1] == "1" for line in lines]
    assert entered == [True, False, True, True, False, False, True, True, False, False, False]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_at_the_edge(stack: Stack, tmp_path: Path) -> None:
    """With TLS at the edge, the match tags are answered with the https redirect (a buyer's
    redirect takes the request's scheme), as the server answers them when its trusted proxy
    says X-Forwarded-Proto: https."""
    cert, key = self_signed(tmp_path)
    port = free_port()
    rendered = render(
        load_config(stack.config),
        tmp_path / "edge",
        listen=f"127.0.0.1:{port}",
        workers="1",
        tls_cert=cert,
        tls_key=key,
    )
    log = AccessLog(tmp_path / "edge" / "logs" / "access.log")
    client = Client(tls_ports=frozenset({port}))
    cookie = [("cookie", f"cm_id={format_browser_id(bytes(range(16)))}")]
    targets = [f"/pixel?google_nid={nid}&google_cm&p=1" for nid in BUYERS]
    with running_nginx(rendered, port):
        try:
            for target in targets:
                status, pairs, _ = both(
                    stack, client, "GET", target, cookie, edge_port=port, scheme="https"
                )
                assert status == 302
                assert dict(pairs)["location"].startswith("https://")  # the request's scheme
        finally:
            client.close()
        lines = log.new_lines(len(targets))
    assert len(lines) == len(targets) and all(answered_at_edge(line) for line in lines), lines


def test_an_error_in_the_lua_proxies_the_request(stack: Stack, tmp_path: Path) -> None:
    """A match tag whose Lua fails (here a handler made to raise) gets the server's answer,
    not nginx's 500; the error is in error.log and the match tag is not logged as answered
    at the edge."""
    port = free_port()
    out = tmp_path / "edge"
    rendered = render(load_config(stack.config), out, listen=f"127.0.0.1:{port}", workers="1")
    lua = out / "cookiematch_edge.lua"
    text = lua.read_text()
    assert text.endswith("return M\n")
    lua.write_text(text.removesuffix("return M\n") + 'M.pixel = function() error("injected") end\n'
                   + "return M\n")  # fmt: skip
    log = AccessLog(out / "logs" / "access.log")
    client = Client()
    cookie = [("cookie", f"cm_id={format_browser_id(bytes(range(16)))}")]
    targets = [f"/pixel?google_nid={nid}&google_cm&p=1" for nid in BUYERS]
    with running_nginx(rendered, port):
        try:
            for target in targets:
                assert both(stack, client, "GET", target, cookie, edge_port=port)[0] == 302
        finally:
            client.close()
        lines = log.new_lines(len(targets))
    assert len(lines) == len(targets) and not any(map(answered_at_edge, lines)), lines
    assert "injected" in (out / "logs" / "error.log").read_text()
    assert matches_logged(out) == 0


# --- nothing lost -----------------------------------------------------------------------------


def collected(stack: Stack) -> None:
    """Wait until the server's collector has read the whole matches log, once nginx has
    written it."""
    out = stack.rendered.conf.parent
    matches_flushed(out)
    log, state = out / MATCHES_LOG, out / COLLECTOR_STATE
    deadline = time.monotonic() + 10
    while True:
        size = log.stat().st_size if log.exists() else 0
        place = state.read_text().split() if state.exists() else ["0", "0"]
        if (size == 0 or int(place[1]) == size) and time.monotonic() > deadline - 9:
            return
        assert time.monotonic() < deadline, (size, place)
        time.sleep(0.1)


def test_nginx_writes_the_buffered_matches_log_when_it_stops(stack: Stack, tmp_path: Path) -> None:
    """The matches log is buffered up to a second; the lines an nginx that stops (SIGTERM)
    still held are written as it exits."""
    port = free_port()
    rendered = render(
        load_config(stack.config), tmp_path / "edge", listen=f"127.0.0.1:{port}", workers="1"
    )
    client = Client()
    with running_nginx(rendered, port):
        try:
            for n in range(10):
                cookie = ("cookie", f"cm_id={format_browser_id(bytes([n]) * 16)}")
                target = "/pixel?google_nid=ad_network_xyz&google_cm"
                assert client.send(port, "GET", target, [cookie])[0] == 302
        finally:
            client.close()
    assert matches_logged(tmp_path / "edge") == 10


def server_figures(stack: Stack, nid: str) -> tuple[float, int]:
    """The server's ``edge_redirect`` count and its monitor's match tags for ``nid``."""
    auth = [("authorization", f"Bearer {ADMIN_TOKEN}")]
    client = Client()
    try:
        _, _, body = client.send(stack.server_port, "GET", "/metrics", auth)
        _, _, stats = client.send(stack.server_port, "GET", f"/admin/v1/buyers/{nid}/stats", auth)
    finally:
        client.close()
    pattern = rf'^cookiematch_pixel_outcomes_total\{{nid="{nid}",outcome="edge_redirect"\}} (\S+)$'
    found = re.search(pattern, body.decode(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0, json.loads(stats)["match_tags"]


def test_the_server_counts_and_monitors_the_match_tags_the_edge_answered(
    stack: Stack, client: Client
) -> None:
    """Each match tag the edge answered reaches the server's collector once: the pixel
    outcome ``edge_redirect`` and the buyer's monitored match tags grow by as many."""
    nid = "ad_network_xyz"
    collected(stack)
    count, match_tags = server_figures(stack, nid)
    for n in range(25):
        cookie = ("cookie", f"cm_id={format_browser_id(bytes([n]) * 16)}")
        status, _, _ = client.send(
            stack.edge_port, "GET", f"/pixel?google_nid={nid}&google_cm", [cookie]
        )
        assert status == 302
    collected(stack)
    deadline = time.monotonic() + 10
    while server_figures(stack, nid) != (count + 25, match_tags + 25):
        assert time.monotonic() < deadline, (server_figures(stack, nid), count, match_tags)
        time.sleep(0.2)


# --- live configuration ---------------------------------------------------------------------


def answered_by_the_edge(
    stack: Stack, client: Client, target: str, headers: Headers, location: str
) -> None:
    """Send ``target`` to the edge until the edge itself answers it, with ``location``."""
    deadline = time.monotonic() + 20
    while True:
        out = stack.rendered.conf.parent
        before = matches_flushed(out)
        status, pairs, _ = client.send(stack.edge_port, "GET", target, headers)
        at_edge = matches_flushed(out) > before
        if at_edge and dict(pairs).get("location", "").startswith(location):
            return
        assert time.monotonic() < deadline, (status, pairs)
        time.sleep(0.2)


def test_buyers_changed_through_the_admin_api_reach_the_edge(stack: Stack, client: Client) -> None:
    """A buyer added through the admin API is answered by the edge within seconds, and its
    new redirect after a change; the edge and the server then agree on generated requests."""
    nid = "live"
    cookie = [("cookie", f"cm_id={format_browser_id(bytes(range(16)))}")]
    target = f"/pixel?google_nid={nid}&google_cm&p=1"
    body = {"nid": nid, "redirect_url": "http://first.example/m?id="}
    assert admin_put(stack.server_port, f"/admin/v1/buyers/{nid}", body) == 201
    answered_by_the_edge(stack, client, target, cookie, "http://first.example/m?id=&p=1&")
    body = {"nid": nid, "redirect_url": "https://second.example/%%GOOGLE_GID%%?v=%%GOOGLE_CVER%%"}
    assert admin_put(stack.server_port, f"/admin/v1/buyers/{nid}", body) == 200
    answered_by_the_edge(stack, client, target, cookie, "http://second.example/")
    keys = stack.rendered.keys
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600  # the server's snapshot
    before = matches_flushed(stack.rendered.conf.parent)
    sent = []

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(requests_for(nid))
    def answered_alike(request: tuple[str, str, Headers]) -> None:
        method, target, headers = request
        both(stack, client, method, target, headers)
        sent.append(target)

    answered_alike()
    assert 0.1 * len(sent) < matches_flushed(stack.rendered.conf.parent) - before < len(sent)


def requests_for(nid: str) -> st.SearchStrategy[tuple[str, str, Headers]]:
    """``requests()`` with every google_nid naming ``nid``."""
    return requests().map(
        lambda r: (r[0], re.sub(r"google_nid=[^&]*", f"google_nid={nid}", r[1]), r[2])
    )
