"""The [dmp] table: the example loads; bad partners and clients fail at load, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cookiematch.config import load_config
from cookiematch.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dmp.toml"
BASE = """
[dmp]
listen = "127.0.0.1:8720"
public_url = "http://dmp.localhost:8720"
admin_token = "0123456789abcdef0123"
[[dmp.clients]]
id = "shop"
allowed_origins = ["http://shop.localhost:8000"]
[[dmp.partners]]
id = "analytics"
sync_url = "https://analytics.example/sync?redir=${CALLBACK_URL}"
uid_macro = "$UID"
ttl_days = 7
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "dmp.toml"
    path.write_text(text)
    return load_config(path, environ={})


def test_the_example_loads_and_compiles_every_partner() -> None:
    config = load_config(EXAMPLE, environ={})
    assert config.roles == {"dmp"}
    dmp = config.dmp
    assert dmp is not None
    partners = {p.id: p for p in dmp.partner_models()}
    assert set(partners) == {"analytics", "email", "orders", "dsp", "data-exchange"}
    assert partners["analytics"].sync.vendor_ids == {755}
    assert partners["email"].id_key is not None and len(partners["email"].id_key) == 32
    assert not partners["data-exchange"].enabled
    assert partners["analytics"].initiates_sync and not partners["email"].initiates_sync
    shop = dmp.client_models()[0]
    assert shop.tags[0].cap == 1 and shop.uses("dsp")
    assert "example-dmp" not in repr(dmp)  # the admin token never shows


def test_the_contract_minimum(tmp_path: Path) -> None:
    config = load(tmp_path, BASE)
    dmp = config.dmp  # type: ignore[attr-defined]
    assert dmp.settings().public_url == "http://dmp.localhost:8720"
    assert dmp.partner_models()[0].ttl_days == 7
    assert not dmp.partner_models()[0].initiates_sync  # partner-initiated syncs are opt-in


def test_public_url_defaults_to_listen(tmp_path: Path) -> None:
    config = load(tmp_path, BASE.replace('public_url = "http://dmp.localhost:8720"\n', ""))
    assert config.dmp.settings().public_url == "http://127.0.0.1:8720"  # type: ignore[attr-defined]


BAD = [
    ("${CALLBACK_URL}", "${NOPE}", "dmp.partners[0].sync_url", "unknown macro"),
    ("https://analytics.example/sync?redir=${CALLBACK_URL}", "https://analytics.example/s",
     "dmp.partners[0].sync_url", "must contain"),
    ("https://analytics.example/sync", "https://${DMP_UID}.example/sync",
     "dmp.partners[0].sync_url", "host"),
    ('uid_macro = "$UID"', 'uid_macro = "a b"', "dmp.partners[0].uid_macro", ""),
    ('ttl_days = 7', 'ttl_days = 0', "dmp.partners[0].ttl_days", ""),
    ('ttl_days = 7', 'initiates_sync = "yes"', "dmp.partners[0].initiates_sync", "bool"),
    ('ttl_days = 7', 'id_format = "signed"', "dmp.partners[0].id_key", "required"),
    ('ttl_days = 7', 'id_format = "signed"\nid_key = "c2hvcnQ="', "dmp.partners[0].id_key",
     "32 bytes"),
    ('allowed_origins = ["http://shop.localhost:8000"]',
     'allowed_origins = ["shop.localhost"]', "dmp.clients[0].allowed_origins[0]", ""),
    ('allowed_origins = ["http://shop.localhost:8000"]', 'partners = ["nobody"]',
     "dmp.clients[0].partners[0]", "no partner"),
    ("ttl_days = 7", 'ttl_days = 7\n[[dmp.clients.tags]]\nid = "t"\nurl = "javascript:alert(1)"',
     "dmp.clients[0].tags[0].url", "absolute http"),
    ("ttl_days = 7", 'ttl_days = 7\n[[dmp.clients.tags]]\nid = "t"\nurl = "https://t.example/${DMP_UID}"',
     "dmp.clients[0].tags[0].url", "no macros"),
    ('admin_token = "0123456789abcdef0123"', 'admin_token = "short"', "dmp.admin_token", "16"),
    ('public_url = "http://dmp.localhost:8720"', 'public_url = "http://dmp.localhost/x"',
     "dmp.public_url", ""),
    ('[dmp]', '[dmp]\nsurprise = 1', "dmp.surprise", "unknown key"),
    ('[dmp]', '[dmp]\njsonp_origins = ["https://shop.example/page"]', "dmp.jsonp_origins[0]",
     "without a path"),
    ('[dmp]', '[dmp]\nrecompute_interval_minutes = -1', "dmp.recompute_interval_minutes",
     "Expected `int` >= 0"),
    ('[dmp]', '[dmp]\nrecompute_interval_minutes = 10081', "dmp.recompute_interval_minutes",
     "Expected `int` <= 10080"),
    ('[dmp]', '[dmp]\nrecompute_interval_minutes = 1.5', "dmp.recompute_interval_minutes",
     "Expected `int`, got `float`"),
    ('[dmp]', '[dmp]\nexport_directory = "exports"', "dmp.export_directory",
     "must be an absolute path"),
    ('allowed_origins = ["http://shop.localhost:8000"]',
     'allowed_origins = ["http://shop.localhost:8000"]\ncmp_wait_ms = 10001',
     "dmp.clients[0].cmp_wait_ms", "<= 10000"),
    ("ttl_days = 7", 'ttl_days = 7\n[[dmp.clients.tags]]\nid = "t"\nurl = "https://t.example/"\n'
     "gvl_vendor_id = 0", "dmp.clients[0].tags[0].gvl_vendor_id", ">= 1"),
    ("ttl_days = 7", 'ttl_days = 7\n[[dmp.destinations]]\nid = "d"\nkind = "file"\npath = "x"\n'
     "gvl_vendor_id = 65536", "dmp.destinations[0].gvl_vendor_id", "<= 65535"),
    ("ttl_days = 7", 'ttl_days = 7\n[[dmp.destinations]]\nid = "d"\nkind = "file"\npath = "x"\n'
     'segments = ["nope"]', "dmp.destinations[0].segments[0]", "no segment"),
    ("ttl_days = 7", 'ttl_days = 7\n[[dmp.destinations]]\nid = "d"\nkind = "file"\npath = "x"\n'
     "export_interval_minutes = 5", "dmp.destinations[0].segments", "required when"),
    ("ttl_days = 7", "ttl_days = 7\npull_interval_minutes = 0",
     "dmp.partners[0].pull_interval_minutes", ">= 0.025"),
    ("ttl_days = 7", "ttl_days = 7\npull_interval_minutes = 0.0001",
     "dmp.partners[0].pull_interval_minutes", ">= 0.025"),
    ("ttl_days = 7", 'ttl_days = 7\n[[dmp.destinations]]\nid = "d"\nkind = "file"\npath = "x"\n'
     "export_interval_minutes = 0.0001",
     "dmp.destinations[0].export_interval_minutes", "0 or at least 0.025"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "key", "message"), BAD)
def test_bad_entries_name_their_key(
    tmp_path: Path, old: str, new: str, key: str, message: str
) -> None:
    assert old in BASE
    pattern = message.replace("$", r"\$") or None
    with pytest.raises(ConfigError, match=pattern) as caught:
        load(tmp_path, BASE.replace(old, new, 1))
    assert caught.value.key == key, str(caught.value)


def test_duplicate_partner(tmp_path: Path) -> None:
    text = BASE + '[[dmp.partners]]\nid = "analytics"\nsync_url = "https://a.example/${DMP_UID}"\n'
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.key == "dmp.partners[1].id"


def test_env_override_of_the_admin_token(tmp_path: Path) -> None:
    path = tmp_path / "dmp.toml"
    path.write_text(BASE)
    config = load_config(path, environ={"COOKIEMATCH_DMP__ADMIN_TOKEN": "from-the-env-0123456"})
    assert config.dmp is not None and config.dmp.admin_token == "from-the-env-0123456"


def test_recompute_interval(tmp_path: Path) -> None:
    """Default hourly; 0 switches the schedule off; the environment can override it."""
    assert load(tmp_path, BASE).dmp.recompute_interval_minutes == 5  # type: ignore[attr-defined]
    off = BASE.replace("[dmp]", "[dmp]\nrecompute_interval_minutes = 0", 1)
    assert load(tmp_path, off).dmp.recompute_interval_minutes == 0  # type: ignore[attr-defined]
    path = tmp_path / "dmp.toml"
    path.write_text(BASE)
    env = {"COOKIEMATCH_DMP__RECOMPUTE_INTERVAL_MINUTES": "15"}
    config = load_config(path, environ=env)
    assert config.dmp is not None and config.dmp.recompute_interval_minutes == 15
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"COOKIEMATCH_DMP__RECOMPUTE_INTERVAL_MINUTES": "-5"})
    assert caught.value.key == "dmp.recompute_interval_minutes"


def test_jsonp_origins(tmp_path: Path) -> None:
    """Off by default; origins are compared in lower case."""
    assert load(tmp_path, BASE).dmp.settings().jsonp_origins == frozenset()  # type: ignore[attr-defined]
    on = BASE.replace("[dmp]", '[dmp]\njsonp_origins = ["https://Shop.Example"]', 1)
    settings = load(tmp_path, on).dmp.settings()  # type: ignore[attr-defined]
    assert settings.jsonp_origins == frozenset({"https://shop.example"})


def test_consent_keys_reach_the_models(tmp_path: Path) -> None:
    text = BASE.replace(
        'allowed_origins = ["http://shop.localhost:8000"]',
        'allowed_origins = ["http://shop.localhost:8000"]\ncmp_wait_ms = 800',
    ) + (
        '[[dmp.clients.tags]]\nid = "t"\nurl = "https://t.example/px.gif"\ngvl_vendor_id = 7\n'
        '[[dmp.clients.tags]]\nid = "own"\nurl = "https://shop.example/px.gif"\n'
        '[[dmp.destinations]]\nid = "d"\nkind = "file"\npath = "out.csv"\ngvl_vendor_id = 5\n'
    )
    dmp = load(tmp_path, text).dmp  # type: ignore[attr-defined]
    shop = dmp.client_models()[0]
    assert shop.cmp_wait_ms == 800
    assert [(t.id, t.gvl_vendor_id) for t in shop.tags] == [("t", 7), ("own", None)]
    assert [d.to_model().gvl_vendor_id for d in dmp.destinations] == [5]
    assert load(tmp_path, BASE).dmp.client_models()[0].cmp_wait_ms == 500  # type: ignore[attr-defined]


def test_analytics_engine_paths_and_memory(tmp_path: Path) -> None:
    config = load(tmp_path, BASE)
    settings = config.dmp.analytics.to_model()  # type: ignore[attr-defined]
    assert settings.path == str(tmp_path / "var" / "dmp-analytics.duckdb")
    assert settings.spill_directory == f"{settings.path}.tmp"
    assert settings.memory_limit_mb == 1024 and settings.threads is None

    text = BASE + '[dmp.analytics]\npath = "/srv/a.duckdb"\ntemp_directory = "spill"\n'
    text += "memory_limit_mb = 512\nthreads = 2\n"
    settings = load(tmp_path, text).dmp.analytics.to_model()  # type: ignore[attr-defined]
    assert (settings.path, settings.spill_directory) == ("/srv/a.duckdb", str(tmp_path / "spill"))
    assert (settings.memory_limit_mb, settings.threads) == (512, 2)

    with pytest.raises(ConfigError, match=">= 64") as caught:
        load(tmp_path, BASE + "[dmp.analytics]\nmemory_limit_mb = 1\n")
    assert caught.value.key == "dmp.analytics.memory_limit_mb"
    assert settings.engine == "duckdb" and settings.spark_master == "local[2]"


def test_analytics_engine_choice(tmp_path: Path) -> None:
    text = BASE + '[dmp.analytics]\nengine = "spark"\npath = "tables"\nthreads = 3\n'
    settings = load(tmp_path, text).dmp.analytics.to_model()  # type: ignore[attr-defined]
    assert (settings.engine, settings.path) == ("spark", str(tmp_path / "tables"))
    assert settings.spark_master == "local[3]"
    text += 'master = "spark://head:7077"\n'
    settings = load(tmp_path, text).dmp.analytics.to_model()  # type: ignore[attr-defined]
    assert settings.spark_master == "spark://head:7077"
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, BASE + '[dmp.analytics]\nengine = "clickhouse"\n')
    assert caught.value.key == "dmp.analytics.engine"


def test_an_engine_in_memory_is_refused(tmp_path: Path) -> None:
    """The engine owns the profiles' traits: a database in memory would lose them each job."""
    with pytest.raises(ConfigError, match=":memory:") as caught:
        load(tmp_path, BASE + '[dmp.analytics]\npath = ":memory:"\n')
    assert caught.value.key == "dmp.analytics.path"
    load(tmp_path, BASE + '[dmp.analytics]\nengine = "off"\npath = ":memory:"\n')


def test_destinations_need_the_engine(tmp_path: Path) -> None:
    """Exports read their deltas from the analytics engine: without one there is none."""
    destination = (
        '[[dmp.segments]]\nid = "seg"\nrule = { synced = "analytics" }\n\n'
        '[[dmp.destinations]]\nid = "files"\nkind = "file"\npath = "/tmp/{segment}.csv"\n\n'
    )
    refused = r'analytics\] engine is "off".*needs no server'
    with pytest.raises(ConfigError, match=refused) as caught:
        load(tmp_path, BASE + destination + '[dmp.analytics]\nengine = "off"\n')
    assert caught.value.key == "dmp.destinations"
    load(tmp_path, BASE + destination)  # on the engine (DuckDB, the default)
