"""The ``[buyer]`` table: the examples load, bad values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cookiematch.buyer.campaigns import Audience
from cookiematch.clock import SECONDS_PER_DAY as DAY
from cookiematch.config import load_config
from cookiematch.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MINIMAL = '[buyer]\nnid = "dsp"\nexchange_url = "https://ex.example/pixel"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "buyer.toml"
    path.write_text(text)
    return path


def test_examples_load() -> None:
    own = load_config(EXAMPLES / "buyer.toml", environ={}).buyer
    hosted = load_config(EXAMPLES / "buyer-hosted.toml", environ={}).buyer
    assert own is not None and hosted is not None
    assert not own.hosted_match and hosted.hosted_match
    assert [c.audience for c in own.campaign_models()] == [Audience.MATCHED, Audience.ANY]


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), environ={})
    assert config.roles == {"buyer"}
    assert config.buyer is not None
    settings = config.buyer.settings()
    assert settings.stale_after_seconds == 14 * DAY
    assert settings.entry_ttl_seconds == 28 * DAY
    assert settings.exchange.match_tag_url() == "https://ex.example/pixel?google_nid=dsp&google_cm"
    assert config.buyer.response == "gif" and config.buyer.cookie_name == "buyer_uid"


def test_environment_overrides(tmp_path: Path) -> None:
    env = {"COOKIEMATCH_BUYER__MATCH_TTL_DAYS": "7", "COOKIEMATCH_BUYER__ADMIN_TOKEN": "1" * 20}
    buyer = load_config(write(tmp_path, MINIMAL), environ=env).buyer
    assert buyer is not None and buyer.match_ttl_days == 7
    assert buyer.admin_token is not None and buyer.admin_token.reveal() == "1" * 20


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('exchange_url = "ftp://x/pixel"', "buyer.exchange_url"),
        ('exchange_url = "/pixel"', "buyer.exchange_url"),
        ('exchange_url = "https://x/pixel#f"', "buyer.exchange_url"),
        ('exchange_url = "https://u:p@x/pixel"', "buyer.exchange_url"),
        ('exchange_url = "https://x/pi xel"', "buyer.exchange_url"),
        ('public_url = "https://b.example/?a=1"', "buyer.public_url"),
        ('win_notice_base_url = "https://b.example/?a=1"', "buyer.win_notice_base_url"),
        ('win_notice_base_url = "b.example"', "buyer.win_notice_base_url"),
        ("table_size_interval_seconds = 59", "buyer.table_size_interval_seconds"),
        ('admin_token = "short"', "buyer.admin_token"),
        ('win_notice_key = "short"', "buyer.win_notice_key"),
        ('public_url = "https://b.example"', "buyer.win_notice_key"),  # nothing signs its nurl
        ('win_notice_base_url = "http://b:1"', "buyer.win_notice_key"),
        ('response = "png"', "buyer.response"),
        ("match_ttl_days = 0", "buyer.match_ttl_days"),
        ("entry_ttl_days = 3", "buyer.entry_ttl_days"),
        ("cookie_secure = false", "buyer.cookie_same_site"),
        ('cookie_name = "a b"', "buyer.cookie_name"),
        ("surprise = 1", "buyer.surprise"),
        ('[[buyer.campaigns]]\nid = "c"\nadm = "x"', "buyer.campaigns[0].bid_price"),
        ('[[buyer.campaigns]]\nid = "c"\nadm = "x"\nbid_price = 1\nw = 3',
         "buyer.campaigns[0].w"),
        ('[[buyer.campaigns]]\nid = "c"\nadm = "x"\nbid_price = 1\n'
         '[[buyer.campaigns]]\nid = "c"\nadm = "y"\nbid_price = 1', "buyer.campaigns[1].id"),
        ('[[buyer.campaigns]]\nid = "c"\nadm = "x"\naudience = "some"',
         "buyer.campaigns[0].audience"),
    ],
)  # fmt: skip
def test_bad_values_name_their_key(tmp_path: Path, extra: str, key: str) -> None:
    lines = MINIMAL.splitlines()
    if extra.startswith("exchange_url"):
        lines = [line for line in lines if not line.startswith("exchange_url")]
    text = "\n".join(lines) + "\n" + extra + "\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert info.value.key == key, str(info.value)


def test_the_win_notice_key_is_derived_from_its_own_setting_else_the_admin_token(
    tmp_path: Path,
) -> None:
    signed = f'{MINIMAL}public_url = "https://b.example"\n'
    token = load_config(write(tmp_path, f'{signed}admin_token = "{"t" * 16}"\n'), environ={}).buyer
    assert token is not None and token.win_notice_secret() == "t" * 16
    env = {"COOKIEMATCH_BUYER__WIN_NOTICE_KEY": "k" * 16}
    env["COOKIEMATCH_BUYER__ADMIN_TOKEN"] = "t" * 16
    own = load_config(write(tmp_path, signed), environ=env).buyer
    assert own is not None and own.win_notice_secret() == "k" * 16
    unsigned = load_config(write(tmp_path, MINIMAL), environ={}).buyer  # no nurl: no key needed
    assert unsigned is not None and unsigned.win_notice_secret() is None


def test_missing_nid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[buyer]\nexchange_url = "https://x/p"\n'), environ={})
    assert info.value.key == "buyer.nid"
