"""The auction's configuration keys: buyers (file and admin API) and publishers."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from cookiematch.config import load_config, parse_buyer
from cookiematch.errors import ConfigError, ValidationFailed
from cookiematch.exchange import codec
from cookiematch.exchange.model import Buyer, Publisher

KEY = base64.b64encode(bytes(32)).decode()
BASE = {"nid": "dsp", "redirect_url": "http://dsp.example/m"}


def test_buyer_keys_round_trip_through_the_admin_store() -> None:
    buyer = parse_buyer(
        {
            **BASE,
            "bidder_url": "http://127.0.0.1:8710/bid",
            "push_url": "http://127.0.0.1:8710/push?a=%%GOOGLE_PUSH%%",
            "pixel_matching": True,
            "hosted_match": True,
            "require_hosted_match": True,
            "max_qps": 50,
        }
    )
    assert buyer.bidder_url == "http://127.0.0.1:8710/bid"
    assert buyer.push_url is not None and "%%GOOGLE_PUSH%%" in buyer.push_url.url
    assert buyer.max_qps == 50
    stored = codec.encode(buyer)
    assert codec.encode(codec.decode(stored, Buyer)) == stored  # templates: by URL


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"pixel_matching": True}, "push_url"),
        ({"require_hosted_match": True}, "require_hosted_match"),
        ({"bidder_url": "ftp://x/bid"}, "bidder_url"),
        ({"bidder_url": "http://x/bid#frag"}, "bidder_url"),
        ({"bidder_url": "http://x/b id"}, "bidder_url"),
        ({"push_url": "http://x/p?%%GOOGLE_NOPE%%"}, "push_url"),
        ({"max_qps": 0}, "max_qps"),
    ],
)
def test_invalid_buyer_keys(extra: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_buyer({**BASE, **extra})
    assert [e["field"] for e in caught.value.errors] == [field]


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[exchange]\nauction_timeout_ms = 80\n[[exchange.keys]]\nversion = 1\nsecret = "{KEY}"\n'
        + body
    )
    return path


def test_publishers_and_timeout_load(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, '[[exchange.publishers]]\nid = "news"\n'
                        '[[exchange.publishers]]\nid = "quiet"\npixel_matching = false\n'),
        environ={},
    )  # fmt: skip
    assert config.exchange is not None
    assert config.exchange.publishers == (Publisher("news"), Publisher("quiet", False))
    assert config.exchange.settings().auction_timeout_ms == 80


def test_file_entry_and_admin_body_are_one_format(tmp_path: Path) -> None:
    keys = {
        **BASE,
        "bidder_url": "http://127.0.0.1:8710/bid",
        "push_url": "http://127.0.0.1:8710/push?a=%%GOOGLE_PUSH%%",
        "pixel_matching": True,
        "max_qps": 50.0,
    }
    entry = "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
    config = load_config(write(tmp_path, f"[[exchange.buyers]]\n{entry}"), environ={})
    assert config.exchange is not None
    (from_file,) = config.exchange.buyers
    assert codec.encode(from_file) == codec.encode(parse_buyer(keys))


def test_file_errors_name_the_key(tmp_path: Path) -> None:
    body = '[[exchange.publishers]]\nid = "news"\n[[exchange.publishers]]\nid = "news"\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, body), environ={})
    assert caught.value.key == "exchange.publishers[1].id"
    body = '[[exchange.buyers]]\nnid = "d"\nredirect_url = "http://d/m"\npixel_matching = true\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, body), environ={})
    assert caught.value.key == "exchange.buyers[0].push_url"
