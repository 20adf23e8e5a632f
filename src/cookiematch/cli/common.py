"""What every command shares: the ``--config`` option, loading it, running a coroutine.

Errors cookiematch raises on purpose become one-line ``click`` errors (exit status 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from cookiematch.config import Config, load_config
from cookiematch.config.dmp import DmpConfig
from cookiematch.errors import CookiematchError

T = TypeVar("T")

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The TOML configuration file.",
)


def load(config_file: Path) -> Config:
    """The validated configuration, or a click error naming the file and key."""
    try:
        return load_config(config_file)
    except CookiematchError as exc:
        raise click.ClickException(str(exc)) from exc


def load_dmp(config_file: Path) -> tuple[Config, DmpConfig]:
    """The configuration and its ``[dmp]`` table, which must be there."""
    config = load(config_file)
    if config.dmp is None:
        raise click.ClickException(f"{config_file}: no [dmp] table")
    return config, config.dmp


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work()`` to completion; cookiematch's own errors become click errors."""

    async def main() -> T:
        return await work()

    try:
        return asyncio.run(main())
    except (CookiematchError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
