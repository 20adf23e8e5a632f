"""What ``cookiematch dmp ingest`` and ``pull`` share, in one process or in each worker: the
partner's configuration, and the DMP core (``roots/dmp.py``) opened for ingestion."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import click

from cookiematch.cli.common import load_dmp
from cookiematch.config import Config
from cookiematch.config.dmp import DmpPartnerConfig
from cookiematch.dmp.ingest import Ingestor
from cookiematch.roots.dmp import DmpCore, open_core
from cookiematch.storage import Durability


def load_partner(config_file: Path, partner_id: str) -> tuple[Config, DmpPartnerConfig]:
    """The configuration and its ``[[dmp.partners]]`` entry, which must be there."""
    config, dmp_config = load_dmp(config_file)
    for partner in dmp_config.partners:
        if partner.id == partner_id:
            return config, partner
    raise click.ClickException(f"{config_file}: no partner {partner_id!r} in [[dmp.partners]]")


def open_ingest_core(config: Config) -> contextlib.AbstractAsyncContextManager[DmpCore]:
    """The DMP core, writing ``ASYNC`` (flushed, and any write the store did not take
    reported as an error, when the block ends); segment memberships follow the writes as they
    do in the server, and the counts go to the DMP's funnel when the block ends."""
    return open_core(config, durability=Durability.ASYNC)


@contextlib.asynccontextmanager
async def open_ingestor(config: Config) -> AsyncIterator[Ingestor]:
    """``open_ingest_core``'s Ingestor."""
    async with open_ingest_core(config) as core:
        yield core.ingestor
