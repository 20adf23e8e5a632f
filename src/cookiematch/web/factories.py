"""App factories that granian workers call: one per role, configured through the environment.

Each imports its role lazily, so that the CLI can read ``ROLE_FACTORIES`` cheaply.
"""

from __future__ import annotations

from cookiematch.config import Config, load_config
from cookiematch.web.router import App
from cookiematch.web.server import config_path


def _config() -> Config:
    path = config_path()
    if path is None:
        raise RuntimeError("COOKIEMATCH_CONFIG is not set; start with `cookiematch serve`")
    return load_config(path)


def exchange() -> App:
    from cookiematch.web.exchange_app import build_exchange_app

    return build_exchange_app(_config())


def buyer() -> App:
    from cookiematch.web.buyer_app import build_buyer_app

    return build_buyer_app(_config())


def dmp() -> App:
    from cookiematch.web.dmp_app import build_dmp_app

    return build_dmp_app(_config())


ROLE_FACTORIES = {
    "exchange": "cookiematch.web.factories:exchange",
    "buyer": "cookiematch.web.factories:buyer",
    "dmp": "cookiematch.web.factories:dmp",
}
