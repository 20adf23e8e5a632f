"""A buyer's keys rotated through the admin API while match tags stream through the edge (a
real nginx with the rendered edge in front of a real ``cookiematch serve``): every match tag
is answered with a 302 whose gid decrypts, with the old key or the new one, to the browser's
ID; none fails; the edge answers with the new key within seconds."""

from __future__ import annotations

import base64
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cookiematch.config import load_config
from cookiematch.edge.layout import MATCHES_LOG
from cookiematch.edge.render import render
from cookiematch.protocol.cookies import format_browser_id
from cookiematch.protocol.userid import UserIdCipher

from conftest import free_port
from support.configs import write_exchange_config
from support.edge import USER, Client, admin_put, matches_logged, require_nginx, running_nginx

NID = "rotating"
URL = "http://rot.example/m?id="
KEYS = {1: b"1" * 32, 2: b"2" * 32}  # v1 is support.configs' KEY_V1
KEY_V2 = f'[[exchange.keys]]\nversion = 2\nsecret = "{base64.b64encode(KEYS[2]).decode()}"\n\n'
BUYER = f'[[exchange.buyers]]\nnid = "{NID}"\nredirect_url = "{URL}"\nkey_version = 1\n'


class Stream(threading.Thread):
    """Match tags of distinct browsers sent through the edge one after another."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.answers: list[tuple[bytes, int, str]] = []  # browser ID, status, Location
        self.failures: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        client = Client()
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                browser_id = n.to_bytes(16, "big")
                cookie = [("cookie", f"cm_id={format_browser_id(browser_id)}")]
                target = f"/pixel?google_nid={NID}&google_cm"
                status, pairs, _ = client.send(self.port, "GET", target, cookie)
                self.answers.append((browser_id, status, dict(pairs).get("location", "")))
        except BaseException as exc:  # the test reports it
            self.failures.append(exc)
        finally:
            client.close()


def edge_versions(out: Path) -> set[str]:
    """The key versions of the match tags the edge itself answered."""
    log = out / MATCHES_LOG
    return {line.split(" ")[2] for line in log.read_text().splitlines()} if log.exists() else set()


def test_keys_rotated_under_a_stream_of_match_tags(tmp_path: Path, start_server: object) -> None:
    require_nginx()
    port, edge_port = free_port(), free_port()
    out = tmp_path / "edge"
    config = write_exchange_config(
        tmp_path, port, buyers=KEY_V2 + BUYER, user_lists="", extra_exchange=f'edge_dir = "{out}"'
    )
    rendered = render(
        load_config(config), out, listen=f"127.0.0.1:{edge_port}", workers="1", user=USER
    )
    argv = [sys.executable, "-m", "cookiematch", "serve", "--config", str(config)]
    start_server(argv=argv, port=port)  # type: ignore[operator]
    cipher = UserIdCipher(KEYS)
    with running_nginx(rendered, edge_port):
        stream = Stream(edge_port)
        stream.start()
        try:
            deadline = time.monotonic() + 10
            while edge_versions(out) != {"1"}:  # the edge answers with the old key
                assert time.monotonic() < deadline and stream.is_alive(), stream.failures
                time.sleep(0.1)
            body = {"nid": NID, "redirect_url": URL, "key_version": 2}
            assert admin_put(port, f"/admin/v1/buyers/{NID}", body) == 200
            rotated_at = len(stream.answers)
            while "2" not in edge_versions(out):  # ... and with the new one within seconds
                assert time.monotonic() < deadline + 10 and stream.is_alive(), stream.failures
                time.sleep(0.1)
            settled = matches_logged(out)
            while matches_logged(out) < settled + 50:
                assert stream.is_alive(), stream.failures
                time.sleep(0.05)
        finally:
            stream.stop.set()
            stream.join(10)
    assert not stream.failures
    versions = []
    for browser_id, status, location in stream.answers:
        assert status == 302, (status, location)
        assert location.startswith(URL + "&google_gid="), location
        params = parse_qs(urlsplit(location).query)
        cver = int(params["google_cver"][0])
        assert cipher.decrypt(params["google_gid"][0], NID, cver) == browser_id
        versions.append(cver)
    assert set(versions[:rotated_at]) == {1}
    assert versions[-20:] == [2] * 20
    assert len(versions) > rotated_at + 50
