"""App factories that granian workers call: one per role, configured through the environment."""

from __future__ import annotations

from cookiematch.config import Config, load_config
from cookiematch.web.exchange_app import build_exchange_app
from cookiematch.web.router import App
from cookiematch.web.server import config_path


def _config() -> Config:
    path = config_path()
    if path is None:
        raise RuntimeError("COOKIEMATCH_CONFIG is not set; start with `cookiematch serve`")
    return load_config(path)


def exchange() -> App:
    return build_exchange_app(_config())


ROLE_FACTORIES = {"exchange": "cookiematch.web.factories:exchange"}
