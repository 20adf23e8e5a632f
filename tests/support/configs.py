"""Configuration files for tests that start a real ``cookiematch serve`` process: a complete
exchange, and the smallest buyer and DMP."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

ADMIN_TOKEN = "test-admin-token-0123456789"
KEY_V1 = base64.b64encode(b"1" * 32).decode()


def write_exchange_config(
    directory: Path,
    port: int,
    *,
    durability: str = "ack",
    extra_exchange: str = "",
    buyers: str | None = None,
    user_lists: str = '[[exchange.user_lists]]\nid = 12345\nowner = "ad_network_xyz"\n',
) -> Path:
    """A complete exchange configuration listening on ``port``, its store in ``directory``."""
    buyers = (
        buyers
        if buyers is not None
        else (
            '[[exchange.buyers]]\nnid = "ad_network_xyz"\n'
            'redirect_url = "http://ad.network.com/pixel?id="\n\n'
            '[[exchange.buyers]]\nnid = "cookie-monster"\n'
            'redirect_url = "http://cookie-monster.com/pixel?id="\nhosted_match = true\n'
        )
    )
    text = f"""
[store]
url = "sqlite:///{directory / "exchange.db"}"
durability = "{durability}"

[exchange]
listen = "127.0.0.1:{port}"
trusted_proxies = ["127.0.0.1"]
admin_token = "{ADMIN_TOKEN}"
{extra_exchange}

[[exchange.keys]]
version = 1
secret = "{KEY_V1}"

{buyers}

{user_lists}
"""
    path = directory / "exchange.toml"
    path.write_text(text)
    return path


def buyer_config(directory: Path, port: int) -> Path:
    """The smallest buyer listening on ``port``, its store in ``directory``."""
    path = directory / "buyer.toml"
    path.write_text(f"""
[store]
url = "sqlite:///{directory / "buyer.db"}"

[buyer]
listen = "127.0.0.1:{port}"
nid = "dsp"
exchange_url = "http://exchange.test/pixel"
public_url = "http://127.0.0.1:{port}"
admin_token = "{ADMIN_TOKEN}"
""")
    return path


def dmp_config(
    directory: Path, port: int, access: str = "open", metrics: str = "", body: str = ""
) -> Path:
    """The smallest DMP listening on ``port``; ``access`` and ``metrics`` go to ``[metrics]``,
    ``body`` after the ``[dmp]`` keys (more of its keys first, then its tables)."""
    path = directory / "dmp.toml"
    path.write_text(f"""
[store]
url = "sqlite:///{directory / "dmp.db"}"

[metrics]
access = "{access}"
{metrics}

[dmp]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
admin_token = "{ADMIN_TOKEN}"
{body}
""")
    return path


def serve_argv(config: Path | str, role: str, *extra: str) -> list[str]:
    """The command line of ``cookiematch serve`` for one role of ``config``."""
    return [sys.executable, "-m", "cookiematch", "serve", "--config", str(config), "--role", role,
            *extra]  # fmt: skip
