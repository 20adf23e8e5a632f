"""A pixel-matching push token returned to a real two-worker exchange: accepted once, whichever
worker each return reaches (the mark is in the store, docs/protocol.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx

from cookiematch.protocol.cookies import parse_browser_id
from cookiematch.protocol.push import PushTokens
from cookiematch.protocol.userid import UserIdCipher

from conftest import ServerProcess, free_port
from support.configs import serve_argv, write_exchange_config

CIPHER = UserIdCipher({1: b"1" * 32})  # support.configs' KEY_V1
RETURNS = 8
BUYERS = """
[[exchange.buyers]]
nid = "pushdsp"
redirect_url = "http://pushdsp.example/match"
push_url = "http://pushdsp.example/push"
pixel_matching = true
"""


def test_a_push_token_is_accepted_once_across_workers(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    port = free_port()
    config = write_exchange_config(tmp_path, port, buyers=BUYERS, user_lists="")
    server = start_server(serve_argv(config, "exchange", "--workers", "2"), port=port)
    with httpx.Client(base_url=server.url, timeout=5) as client:  # the exchange cookie, set
        first = client.get("/pixel?google_nid=pushdsp&google_cm&google_sc")
    cookie = first.headers["set-cookie"].split(";", 1)[0]
    browser_id = parse_browser_id(cookie.partition("=")[2])
    assert browser_id is not None
    token = PushTokens(CIPHER).issue(browser_id, "pushdsp", int(time.time()))

    def give_back(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=5) as fresh:  # its own connection
            return fresh.get(
                f"/pixel?google_nid=pushdsp&google_push={token}", headers={"Cookie": cookie}
            )

    with ThreadPoolExecutor(RETURNS) as pool:
        answers = list(pool.map(give_back, range(RETURNS)))
    recorded = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 302]
    assert len(recorded) == 1 and recorded[0].headers["content-type"] == "image/gif"
    assert len(refused) == RETURNS - 1
    for answer in refused:
        assert dict(parse_qsl(urlsplit(answer.headers["location"]).query)) == {"google_error": "5"}
