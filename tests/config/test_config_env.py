"""COOKIEMATCH_<SECTION>__<KEY> overrides, and secrets that never show."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest

from cookiematch.config import KeySecret, Secret, load_config
from cookiematch.errors import ConfigError
from cookiematch.storage import Durability

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "exchange.toml"
KEY = base64.b64encode(bytes(range(32))).decode()
TOKEN = "0123456789abcdef-token"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


MINIMAL = f"""
[exchange]
[[exchange.keys]]
version = 1
secret = "{KEY}"
"""


def test_string_boolean_integer_and_array_overrides(tmp_path: Path) -> None:
    environ = {
        "COOKIEMATCH_EXCHANGE__ADMIN_TOKEN": "12345678901234567890",  # digits stay a string
        "COOKIEMATCH_EXCHANGE__COOKIE_SECURE": "false",
        "COOKIEMATCH_EXCHANGE__COOKIE_MAX_AGE_DAYS": "30",
        "COOKIEMATCH_EXCHANGE__TRUSTED_PROXIES": '["10.0.0.0/8", "::1"]',
        "COOKIEMATCH_EXCHANGE__COOKIE_DOMAIN": '".example.com"',  # a quoted TOML string
        "COOKIEMATCH_EXCHANGE__LISTEN": "0.0.0.0:9000",
        "COOKIEMATCH_CONFIG": "/somewhere.toml",  # not an override: ignored
        "OTHER": "x",
    }
    config = load_config(write(tmp_path, MINIMAL), environ=environ)
    exchange = config.exchange
    assert exchange is not None
    assert exchange.admin_token is not None
    assert exchange.admin_token.reveal() == "12345678901234567890"
    assert exchange.cookie_secure is False
    assert exchange.cookie_max_age_days == 30
    assert exchange.trusted_proxies == ("10.0.0.0/8", "::1")
    assert exchange.cookie_domain == ".example.com"
    assert (exchange.listen.host, exchange.listen.port) == ("0.0.0.0", 9000)


def test_override_replaces_file_value(tmp_path: Path) -> None:
    environ = {"COOKIEMATCH_EXCHANGE__ADMIN_TOKEN": TOKEN}
    config = load_config(EXAMPLE, environ=environ)
    assert config.exchange is not None and config.exchange.admin_token == TOKEN


def test_store_overrides_without_store_table(tmp_path: Path) -> None:
    environ = {
        "COOKIEMATCH_STORE__URL": "sqlite://data/x.db",
        "COOKIEMATCH_STORE__DURABILITY": "async",
    }
    config = load_config(write(tmp_path, MINIMAL), environ=environ)
    assert config.store.url == f"sqlite://{tmp_path / 'data' / 'x.db'}"
    assert config.store.durability is Durability.ASYNC


def test_keys_from_the_environment(tmp_path: Path) -> None:
    other = base64.b64encode(bytes(32)).decode()
    environ = {"COOKIEMATCH_EXCHANGE__KEYS": f'[{{version = 2, secret = "{other}"}}]'}
    config = load_config(write(tmp_path, MINIMAL), environ=environ)
    assert config.exchange is not None
    assert config.exchange.key_secrets() == {2: bytes(32)}


@pytest.mark.parametrize(
    ("name", "value", "key", "fragment"),
    [
        ("COOKIEMATCH_EXCHANGE__COOKIE_SECURE", "maybe", "exchange.cookie_secure", "bool"),
        ("COOKIEMATCH_EXCHANGE__ADMIN_TOKEN", "short", "exchange.admin_token", "16"),
        ("COOKIEMATCH_EXCHANGE__COLOUR", "blue", "exchange.colour", "unknown key"),
        ("COOKIEMATCH_STORE__DURABILITY", "never", "store.durability", "'async'"),
        ("COOKIEMATCH_BOGUS__KEY", "1", "bogus", "unknown section"),
        ("COOKIEMATCH_DMP__LISTEN", "127.0.0.1:1", "dmp.listen", "no [dmp] table"),
        ("COOKIEMATCH_EXCHANGE__KEYS__0", "1", None, "COOKIEMATCH_<SECTION>__<KEY>"),
    ],
)
def test_bad_override_names_variable_file_and_key(
    tmp_path: Path, name: str, value: str, key: str | None, fragment: str
) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={name: value})
    assert caught.value.file == str(path)
    assert caught.value.key == key
    assert name in str(caught.value)
    assert fragment in str(caught.value)


def test_override_cannot_enable_a_role(tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\nurl = "sqlite:///x.db"\n')
    with pytest.raises(ConfigError, match=r"no \[exchange\] table") as caught:
        load_config(path, environ={"COOKIEMATCH_EXCHANGE__ADMIN_TOKEN": TOKEN})
    assert caught.value.key == "exchange.admin_token"


def test_os_environ_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOKIEMATCH_EXCHANGE__ADMIN_TOKEN", TOKEN)
    config = load_config(write(tmp_path, MINIMAL))
    assert config.exchange is not None and config.exchange.admin_token == TOKEN


# --- secrets --------------------------------------------------------------------------------


def test_secret_is_masked_but_revealable() -> None:
    secret = Secret(TOKEN)
    assert repr(secret) == "Secret('**********')"
    assert str(secret) == "**********"
    assert f"{secret}" == "**********"
    assert secret.reveal() == TOKEN
    assert secret == TOKEN and secret == Secret(TOKEN) and secret != "other"
    assert len(secret) == len(TOKEN)
    with pytest.raises(AttributeError):
        secret._value = "x"


def test_key_secret() -> None:
    key = KeySecret(KEY)
    assert key.key_bytes() == bytes(range(32))
    assert KEY not in repr(key) and KEY not in str(key)
    for bad in ("", "!!!!", base64.b64encode(bytes(31)).decode()):
        with pytest.raises(ValueError):
            KeySecret(bad)


def test_secrets_never_in_repr_or_str_of_config(caplog: pytest.LogCaptureFixture) -> None:
    environ = {"COOKIEMATCH_EXCHANGE__ADMIN_TOKEN": TOKEN}
    config = load_config(EXAMPLE, environ=environ)
    assert config.exchange is not None
    key_text = config.exchange.keys[0].secret.reveal()
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("config %s %r", config, config)
    for text in (repr(config), str(config), f"{config}", repr(config.exchange), caplog.text):
        assert TOKEN not in text
        assert key_text not in text
        assert "Secret('**********')" in text


def test_error_messages_do_not_show_secrets(tmp_path: Path) -> None:
    bad_key = "A" * 40  # valid base64, wrong length
    path = write(tmp_path, f'[exchange]\n[[exchange.keys]]\nversion = 1\nsecret = "{bad_key}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert bad_key not in str(caught.value)
