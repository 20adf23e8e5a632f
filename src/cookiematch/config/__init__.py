"""The TOML configuration: loaded, validated and compiled into domain objects at start.

    config = load_config("examples/exchange.toml")
    config.roles                      # frozenset({"exchange"})
    config.store.url                  # relative sqlite paths resolved against the file's dir
    config.exchange.buyers            # tuple[Buyer, ...], redirect templates already compiled
    config.exchange.settings()        # ExchangeSettings
    config.exchange.key_secrets()     # {version: 32 bytes}

Keys, defaults and environment overrides: docs/configuration.md.
"""

from cookiematch.config.entries import parse_buyer, parse_user_list
from cookiematch.config.loader import ENV_PREFIX, load_config
from cookiematch.config.schema import Config, ExchangeConfig, KeyConfig, StoreConfig
from cookiematch.config.values import KeySecret, Listen, Secret

__all__ = [
    "ENV_PREFIX",
    "Config",
    "ExchangeConfig",
    "KeyConfig",
    "KeySecret",
    "Listen",
    "Secret",
    "StoreConfig",
    "load_config",
    "parse_buyer",
    "parse_user_list",
]
