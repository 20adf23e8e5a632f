"""``cookiematch credential``: a token, and the configuration entry that recognises it."""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path

from click.testing import CliRunner

from cookiematch.cli.main import main
from cookiematch.config import load_config
from cookiematch.exchange.credentials import authenticate
from cookiematch.exchange.registry import ExchangeRegistry
from cookiematch.storage import open_store

KEY = base64.b64encode(bytes(32)).decode()


async def test_the_printed_entry_recognises_the_printed_token(tmp_path: Path) -> None:
    args = ["credential", "--nid", "dsp", "--scope", "user_lists", "--scope", "redirect_url"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    first, entry = result.output.split("\n", 1)
    token = first.rpartition(" ")[2]
    assert token.startswith("cmk_") and token not in entry
    assert tomllib.loads(entry)["exchange"]["credentials"][0]["scopes"] == [
        "user_lists",
        "redirect_url",
    ]
    config = tmp_path / "exchange.toml"
    config.write_text(f"""
[store]
url = "sqlite:///{tmp_path / "x.db"}"
[exchange]
[[exchange.keys]]
version = 1
secret = "{KEY}"
[[exchange.buyers]]
nid = "dsp"
redirect_url = "http://dsp.example/m"
{entry}""")
    exchange = load_config(config, environ={}).exchange
    assert exchange is not None
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        registry = ExchangeRegistry(store, exchange.buyers, (), exchange.credentials)
        found = authenticate(registry, token)
        assert found is not None and found.nid == "dsp"
        assert authenticate(registry, token + "x") is None
    finally:
        await store.close()


def test_a_bad_nid_or_scope_is_refused() -> None:
    assert CliRunner().invoke(main, ["credential", "--nid", "a b"]).exit_code == 2
    assert CliRunner().invoke(main, ["credential", "--nid", "x", "--scope", "all"]).exit_code == 2
