"""The project's buyer and exchange as real ``cookiematch serve`` processes, and the
``cookiematch conform`` command run as a process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import REPO, ServerProcess, free_port
from support.configs import serve_argv, write_exchange_config

BUYER_EXCHANGE = "https://exchange.example/pixel"
SEED_BUYERS = (
    '[[exchange.buyers]]\nnid = "1234"\nredirect_url = "http://ad.network.com/pixel"\n\n'
    '[[exchange.buyers]]\nnid = "ad_network_xyz"\n'
    'redirect_url = "http://ad.network.com/pixel?id="\n\n'
    '[[exchange.buyers]]\nnid = "cookie-monster"\n'
    'redirect_url = "http://cookie-monster.com/pixel?id="\nhosted_match = true\n'
)
EXTENDED_NID = "ad_network_xyz_extended"
DENIED_LIST = 777  # another buyer's: ad_network_xyz may not add to it
HOSTED_LIST = 888  # cookie-monster's
STAND_INS = (
    f'[[exchange.buyers]]\nnid = "{EXTENDED_NID}"\n'
    'redirect_url = "http://ad.network.com/pixel?id=&p1=v1&p2=v2"\n'
)
SEED_LISTS = (
    '[[exchange.user_lists]]\nid = 12345\nowner = "ad_network_xyz"\n\n'
    f'[[exchange.user_lists]]\nid = {DENIED_LIST}\nowner = "1234"\n\n'
    f'[[exchange.user_lists]]\nid = {HOSTED_LIST}\nowner = "cookie-monster"\n'
)
OPTOUT_COOKIE = "cm_id=OPT_OUT"  # the exchange's cookie (its default name) of an opted-out browser
STAND_IN_OPTIONS = (
    "--optout-cookie", OPTOUT_COOKIE, "--extended-nid", EXTENDED_NID,
    "--denied-list", str(DENIED_LIST), "--hosted-list", str(HOSTED_LIST),
)  # fmt: skip


def start_buyer(
    start: Callable[..., ServerProcess], directory: Path, *, response: str = "gif"
) -> ServerProcess:
    port = free_port()
    config = directory / "buyer.toml"
    config.write_text(f"""
[store]
url = "sqlite:///{directory / "buyer.db"}"

[buyer]
listen = "127.0.0.1:{port}"
nid = "dsp"
exchange_url = "{BUYER_EXCHANGE}"
public_url = "http://127.0.0.1:{port}"
admin_token = "buyer-admin-token-0123456789"
hosted_match = true
response = "{response}"

[[buyer.campaigns]]
id = "retarget"
audience = "matched"
matched_bid_price = 4.0
adm = "<p>welcome back</p>"

[[buyer.campaigns]]
id = "prospect"
bid_price = 0.5
adm = "<p>hello</p>"
""")
    return start(argv=serve_argv(config, "buyer"), port=port)


def start_exchange(start: Callable[..., ServerProcess], directory: Path) -> ServerProcess:
    port = free_port()
    config = write_exchange_config(
        directory, port, buyers=SEED_BUYERS + STAND_INS, user_lists=SEED_LISTS
    )
    return start(argv=serve_argv(config, "exchange"), port=port)


def conform(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cookiematch", "conform", *argv],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
