"""load_config: the shipped example, converters, and one test per kind of error (file + key)."""

from __future__ import annotations

import base64
from pathlib import Path

import msgspec
import pytest

from cookiematch.config import Config, Listen, load_config
from cookiematch.errors import ConfigError
from cookiematch.exchange.model import ExchangeSettings, UserList
from cookiematch.privacy.policy import Operation
from cookiematch.storage import Durability

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "exchange.toml"
KEY = base64.b64encode(bytes(range(32))).decode()
SHORT_KEY = base64.b64encode(bytes(16)).decode()

PARTS = {
    "store": "",
    "exchange": 'admin_token = "0123456789abcdef"',
    "keys": f'[[exchange.keys]]\nversion = 1\nsecret = "{KEY}"',
    "buyer": "",
    "buyers": "",
    "lists": "",
    "tail": "",
}
TEMPLATE = """
{store}
[exchange]
{exchange}
{keys}
[[exchange.buyers]]
nid = "ad_network_xyz"
redirect_url = "http://ad.network.com/pixel?id="
{buyer}
{buyers}
[[exchange.user_lists]]
id = 12345
owner = "ad_network_xyz"
{lists}
{tail}
"""


def write(tmp_path: Path, **parts: str) -> Path:
    path = tmp_path / "cookiematch.toml"
    path.write_text(TEMPLATE.format(**{**PARTS, **parts}))
    return path


def buyer(nid: str = "other", url: str = "http://other.example/p", extra: str = "") -> str:
    return f'[[exchange.buyers]]\nnid = "{nid}"\nredirect_url = "{url}"\n{extra}'


def test_example_loads() -> None:
    config = load_config(EXAMPLE, environ={})
    assert config.roles == {"exchange"}
    assert config.store.url == f"sqlite://{EXAMPLE.parent / 'var' / 'exchange.db'}"
    assert config.store.durability is Durability.ACK
    exchange = config.exchange
    assert exchange is not None
    assert exchange.listen == Listen("127.0.0.1", 8700)
    buyers = {b.nid: b for b in exchange.buyers}
    assert buyers["ad_network_xyz"].redirect_url.url == "http://ad.network.com/pixel?id="
    assert buyers["cookie-monster"].redirect_url.url == "http://cookie-monster.com/pixel?id="
    assert buyers["cookie-monster"].hosted_match is True
    assert buyers["cookie-monster"].hosted_match_writes_per_second == 100.0
    lists = {u.id: u for u in exchange.user_lists}
    assert lists[12345] == UserList(id=12345, owner="ad_network_xyz")
    assert set(lists) == {12345, 45678, 24680}
    assert lists[24680].owner == "cookie-monster"
    secrets = exchange.key_secrets()
    assert list(secrets) == [1] and len(secrets[1]) == 32


def test_defaults_and_settings(tmp_path: Path) -> None:
    config = load_config(write(tmp_path), environ={})
    assert config.exchange is not None
    assert config.exchange.settings() == ExchangeSettings()
    assert config.store.url == f"sqlite://{tmp_path / 'var' / 'cookiematch.db'}"
    assert config.exchange.admin_token is not None
    assert config.exchange.admin_token.reveal() == "0123456789abcdef"
    # a browser's store calls within 50 ms, an admin request's within 1 s
    assert (config.exchange.store_deadline_ms, config.exchange.admin_store_deadline_ms) == (
        50,
        1000,
    )


def test_settings_mapping(tmp_path: Path) -> None:
    exchange = """admin_token = "0123456789abcdef"
listen = "[::1]:0"
trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1/128"]
set_cookie_by_default = true
extras_position = "after"
cookie_name = "xid"
cookie_domain = ".exchange.example"
cookie_secure = false
cookie_max_age_days = 30
hosted_match_ttl_days = 7
push_token_ttl_seconds = 60
match_expiry_days = 3"""
    config = load_config(write(tmp_path, exchange=exchange), environ={})
    assert config.exchange is not None
    assert config.exchange.listen == Listen("::1", 0)
    assert str(config.exchange.listen) == "[::1]:0"
    assert config.exchange.settings() == ExchangeSettings(
        set_cookie_by_default=True,
        extras_position="after",
        cookie_name="xid",
        cookie_domain=".exchange.example",
        cookie_secure=False,
        cookie_max_age_days=30,
        hosted_match_ttl_days=7,
        push_token_ttl_seconds=60,
        match_expiry_days=3,
        trusted_proxies=("127.0.0.1", "10.0.0.0/8", "::1/128"),
    )
    assert config.exchange.settings().extras_first is False


def test_keys_urlsafe_unpadded_and_versions(tmp_path: Path) -> None:
    raw = bytes(range(200, 232))
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    keys = PARTS["keys"] + f'\n[[exchange.keys]]\nversion = 7\nsecret = "{urlsafe}"'
    config = load_config(write(tmp_path, keys=keys), environ={})
    assert config.exchange is not None
    assert config.exchange.key_secrets() == {1: bytes(range(32)), 7: raw}


def test_store_paths(tmp_path: Path) -> None:
    absolute = write(tmp_path, store='[store]\nurl = "sqlite:///srv/cm.db"\ndurability = "async"')
    config = load_config(absolute, environ={})
    assert config.store.url == "sqlite:///srv/cm.db"
    assert config.store.durability is Durability.ASYNC
    redis = load_config(write(tmp_path, store='[store]\nurl = "redis://h:6379/0"'), environ={})
    assert redis.store.url == "redis://h:6379/0"


def test_no_role_tables(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text('[store]\nurl = "sqlite:///x.db"\n')
    config = load_config(path, environ={})
    assert config.roles == frozenset()
    assert config.exchange is None


def test_required_lists_and_credentials_load(tmp_path: Path) -> None:
    digest = "0123456789abcdef" * 4
    tail = (f'[[exchange.credentials]]\nnid = "ad_network_xyz"\ntoken_sha256 = "{digest}"\n'
            'scopes = ["user_lists", "redirect_url"]')  # fmt: skip
    path = write(tmp_path, buyer="require_user_lists = [12345]", tail=tail)
    exchange = load_config(path, environ={}).exchange
    assert exchange is not None
    assert exchange.buyers[0].require_user_lists == (12345,)
    [credential] = exchange.credentials
    assert credential.id == "0123456789abcdef" and credential.nid == "ad_network_xyz"
    assert credential.scopes == ("user_lists", "redirect_url")


def test_config_is_immutable() -> None:
    config = load_config(EXAMPLE, environ={})
    with pytest.raises(AttributeError):
        config.store = config.store  # type: ignore[misc]
    assert config.exchange is not None
    with pytest.raises(AttributeError):
        config.exchange.keys[0].secret._value = "x"
    assert msgspec.structs.replace(config) == config


HASH = "a" * 64
LONG_URL = "http://long.example/p?x=" + "a" * 2100

ERRORS: list[tuple[str, dict[str, str], str | None, str]] = [
    # (case, template parts, key, fragment of the message)
    ("unknown table", {"tail": "[bogus]\nx = 1"}, "bogus", "unknown key"),
    ("durability", {"store": '[store]\ndurability = "later"'}, "store.durability", "'ack'"),
    ("store url", {"store": '[store]\nurl = "nowhere"'}, "store.url", "scheme://"),
    ("store key", {"store": "[store]\npath = 1"}, "store.path", "unknown key"),
    ("exchange key", {"exchange": "colour = 1"}, "exchange.colour", "unknown key"),
    ("listen", {"exchange": 'listen = "localhost"'}, "exchange.listen", "host:port"),
    ("port", {"exchange": 'listen = "1.2.3.4:70000"'}, "exchange.listen", "range"),
    ("listen type", {"exchange": "listen = 8700"}, "exchange.listen", "str"),
    ("proxy", {"exchange": 'trusted_proxies = ["nope"]'}, "exchange.trusted_proxies[0]", "IP"),
    (
        "proxy host bits",
        {"exchange": 'trusted_proxies = ["::1", "10.0.0.1/8"]'},
        "exchange.trusted_proxies[1]",
        "host bits",
    ),
    ("token type", {"exchange": "admin_token = 5"}, "exchange.admin_token", "str"),
    ("token short", {"exchange": 'admin_token = "short"'}, "exchange.admin_token", "16"),
    ("extras", {"exchange": 'extras_position = "middle"'}, "exchange.extras_position", "'after'"),
    (
        "cookie age",
        {"exchange": "cookie_max_age_days = 401"},
        "exchange.cookie_max_age_days",
        "400",
    ),
    ("cookie name", {"exchange": 'cookie_name = "a b"'}, "exchange.cookie_name", "regex"),
    ("bool", {"exchange": 'cookie_secure = "yes"'}, "exchange.cookie_secure", "bool"),
    ("ttl", {"exchange": "push_token_ttl_seconds = 0"}, "exchange.push_token_ttl_seconds", ">= 1"),
    ("no keys", {"keys": ""}, "exchange.keys", "at least one"),
    (
        "store deadline over the auction's",
        {"exchange": "store_deadline_ms = 120"},
        "exchange.store_deadline_ms",
        "below auction_timeout_ms",
    ),
    (
        "store deadline range",
        {"exchange": "admin_store_deadline_ms = 0"},
        "exchange.admin_store_deadline_ms",
        ">= 1",
    ),
    (
        "key base64",
        {"keys": '[[exchange.keys]]\nversion = 1\nsecret = "not base64!"'},
        "exchange.keys[0].secret",
        "base64",
    ),
    (
        "key length",
        {"keys": f'[[exchange.keys]]\nversion = 1\nsecret = "{SHORT_KEY}"'},
        "exchange.keys[0].secret",
        "exactly 32 bytes",
    ),
    (
        "key version range",
        {"keys": f'[[exchange.keys]]\nversion = 256\nsecret = "{KEY}"'},
        "exchange.keys[0].version",
        "255",
    ),
    (
        "key version duplicate",
        {"keys": PARTS["keys"] + "\n" + PARTS["keys"]},
        "exchange.keys[1].version",
        "duplicate",
    ),
    (
        "key missing",
        {"keys": "[[exchange.keys]]\nversion = 1"},
        "exchange.keys[0].secret",
        "missing",
    ),
    (
        "buyer nid missing",
        {"buyers": '[[exchange.buyers]]\nredirect_url = "http://a.example/"'},
        "exchange.buyers[1].nid",
        "missing required key",
    ),
    ("buyer nid chars", {"buyers": buyer("a b")}, "exchange.buyers[1].nid", "1-64 characters"),
    ("buyer nid long", {"buyers": buyer("n" * 65)}, "exchange.buyers[1].nid", "1-64 characters"),
    ("buyer nid dot-dot", {"buyers": buyer("..")}, "exchange.buyers[1].nid", "not . or .."),
    ("buyer duplicate", {"buyers": buyer("ad_network_xyz")}, "exchange.buyers[1].nid", "duplicate"),
    (
        "url scheme",
        {"buyers": buyer(url="ftp://a.example/")},
        "exchange.buyers[1].redirect_url",
        "",
    ),
    (
        "url fragment",
        {"buyers": buyer(url="http://a.example/#f")},
        "exchange.buyers[1].redirect_url",
        "",
    ),
    (
        "url macro",
        {"buyers": buyer(url="http://a.example/?u=%%GOOGLE_NOPE%%")},
        "exchange.buyers[1].redirect_url",
        "macro",
    ),
    ("url long", {"buyers": buyer(url=LONG_URL)}, "exchange.buyers[1].redirect_url", ""),
    (
        "url type",
        {"buyers": '[[exchange.buyers]]\nnid = "x"\nredirect_url = 1'},
        "exchange.buyers[1].redirect_url",
        "Expected `str`, got `int`",
    ),
    ("duplicate TOML key", {"buyer": "redirect_url = 1"}, None, "invalid TOML"),
    ("hosted_match", {"buyer": 'hosted_match = "yes"'}, "exchange.buyers[0].hosted_match", "bool"),
    (
        "writes per second",
        {"buyer": "hosted_match_writes_per_second = 0"},
        "exchange.buyers[0].hosted_match_writes_per_second",
        "> 0",
    ),
    ("buyer key", {"buyer": "colour = 1"}, "exchange.buyers[0].colour", "unknown key"),
    (
        "list id",
        {"lists": '[[exchange.user_lists]]\nid = 0\nowner = "ad_network_xyz"'},
        "exchange.user_lists[1].id",
        ">= 1",
    ),
    (
        "list id type",
        {"lists": '[[exchange.user_lists]]\nid = "7"\nowner = "ad_network_xyz"'},
        "exchange.user_lists[1].id",
        "int",
    ),
    (
        "list duplicate",
        {"lists": '[[exchange.user_lists]]\nid = 12345\nowner = "ad_network_xyz"'},
        "exchange.user_lists[1].id",
        "duplicate",
    ),
    (
        "list owner",
        {"lists": '[[exchange.user_lists]]\nid = 2\nowner = "nobody"'},
        "exchange.user_lists[1].owner",
        "nobody",
    ),
    (
        "membership",
        {"lists": "membership_days = 0"},
        "exchange.user_lists[0].membership_days",
        ">= 1",
    ),
    (
        "required list missing",
        {"buyer": "require_user_lists = [4242]"},
        "exchange.buyers[0].require_user_lists[0]",
        "no user list 4242",
    ),
    (
        "required list of another buyer",
        {"buyers": buyer(extra="require_user_lists = [12345]")},
        "exchange.buyers[1].require_user_lists[0]",
        "another buyer",
    ),
    (
        "required list twice",
        {"buyer": "require_user_lists = [12345, 12345]"},
        "exchange.buyers[0].require_user_lists",
        "twice",
    ),
    (
        "credential hash",
        {"tail": '[[exchange.credentials]]\nnid = "ad_network_xyz"\ntoken_sha256 = "abc"'},
        "exchange.credentials[0].token_sha256",
        "regex",
    ),
    (
        "credential buyer",
        {"tail": f'[[exchange.credentials]]\nnid = "nobody"\ntoken_sha256 = "{HASH}"'},
        "exchange.credentials[0].nid",
        "nobody",
    ),
    (
        "credential scope",
        {
            "tail": f'[[exchange.credentials]]\nnid = "ad_network_xyz"\ntoken_sha256 = "{HASH}"\n'
            'scopes = ["buyers"]'
        },
        "exchange.credentials[0].scopes[0]",
        "user_lists",
    ),
    (
        "credential duplicate",
        {
            "tail": f'[[exchange.credentials]]\nnid = "ad_network_xyz"\ntoken_sha256 = "{HASH}"\n'
            f'[[exchange.credentials]]\nnid = "ad_network_xyz"\ntoken_sha256 = "{HASH}"'
        },
        "exchange.credentials[1].token_sha256",
        "duplicate",
    ),
    ("syntax", {"tail": "[exchange"}, None, "invalid TOML"),
]


@pytest.mark.parametrize(
    ("parts", "key", "fragment"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_error_names_file_and_key(
    tmp_path: Path, parts: dict[str, str], key: str | None, fragment: str
) -> None:
    path = write(tmp_path, **parts)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    error = caught.value
    assert error.file == str(path)
    assert error.key == key
    assert str(path) in str(error)
    if key is not None:
        assert f": {key}: " in str(error)
    assert fragment in str(error)


def test_section_of_wrong_type(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("exchange = 5\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.key == "exchange"


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match="cannot read") as caught:
        load_config(missing, environ={})
    assert caught.value.file == str(missing)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(binary, environ={})


def test_more_problems_are_counted(tmp_path: Path) -> None:
    lists = (
        '[[exchange.user_lists]]\nid = 2\nowner = "x"\n[[exchange.user_lists]]\nid = 3\nowner = "y"'
    )
    with pytest.raises(ConfigError, match=r"and 1 more problems") as caught:
        load_config(write(tmp_path, lists=lists), environ={})
    assert caught.value.key == "exchange.user_lists[1].owner"


def test_config_type_is_extensible_by_one_field() -> None:
    """Roles are the optional tables of Config other than [store] and [privacy]."""
    assert set(Config.__struct_fields__) - {"store", "privacy", "metrics", "console"} == {
        "exchange",
        "buyer",
        "dmp",
    }
    assert Config().roles == frozenset()


def test_privacy_table_reaches_the_policy_settings(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[privacy]\nhost_vendor_id = 755\ngdpr_default = true\npersonalise_purposes = [2, 3]\n"
    )
    settings = load_config(path, environ={}).privacy.settings()
    assert (settings.host_vendor_id, settings.gdpr_default, settings.honour_gpc) == (
        755,
        True,
        True,
    )
    assert settings.purposes[Operation.PERSONALISE] == frozenset({2, 3})
    assert settings.purposes[Operation.SYNC] == frozenset({1})
    assert (
        load_config(
            path, environ={"COOKIEMATCH_PRIVACY__GDPR_DEFAULT": "false"}
        ).privacy.gdpr_default
        is False
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[privacy]\nhost_vendor_id = 0\n", "privacy.host_vendor_id"),
        ("[privacy]\nsync_purposes = [25]\n", "privacy.sync_purposes"),
        ("[privacy]\nsync_purposes = []\n", "privacy.sync_purposes"),
        ("[privacy]\nmystery = 1\n", "privacy"),
    ],
)
def test_privacy_table_refuses(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    assert key in str(refused.value)


@pytest.mark.parametrize(
    ("metrics", "key", "fragment"),
    [
        ('buyer_listen = "127.0.0.1:9100"\ndmp_listen = "127.0.0.1:9100"', "metrics.dmp_listen",
         "the same address as metrics.buyer_listen"),
        ('dmp_listen = "127.0.0.1:8800"', "metrics.dmp_listen", "the same address as dmp.listen"),
        ('access = "token"', "metrics.access", '"token" needs [buyer] admin_token'),
    ],
    ids=["two roles on one metrics port", "on the role's own port", "token without a token"],
)  # fmt: skip
def test_metrics_listeners_and_access_are_checked(
    tmp_path: Path, metrics: str, key: str, fragment: str
) -> None:
    path = tmp_path / "roles.toml"
    path.write_text(f"""
[metrics]
{metrics}

[buyer]
nid = "dsp"
exchange_url = "https://exchange.example/pixel"

[dmp]
listen = "127.0.0.1:8800"
public_url = "https://dmp.example"
admin_token = "an-admin-token-of-some-length"
""")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.key == key and fragment in str(caught.value)
