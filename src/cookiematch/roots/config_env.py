"""The configuration a server worker was started with (``cookiematch serve`` sets it)."""

from __future__ import annotations

from cookiematch.config import Config, load_config
from cookiematch.web.server import config_path


def config_from_env() -> Config:
    """The validated configuration named by ``COOKIEMATCH_CONFIG``."""
    path = config_path()
    if path is None:
        raise RuntimeError("COOKIEMATCH_CONFIG is not set; start with `cookiematch serve`")
    return load_config(path)
