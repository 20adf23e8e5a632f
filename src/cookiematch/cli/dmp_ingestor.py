"""What ``cookiematch dmp ingest`` and ``pull`` share, in one process or in each worker: the
partner's configuration and an Ingestor over the configured store."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import click

from cookiematch.cli.common import load_dmp
from cookiematch.config import Config
from cookiematch.config.dmp import DmpConfig, DmpPartnerConfig
from cookiematch.config.dmp_segments import build_segment_service
from cookiematch.dmp.ingest import Ingestor, build_ingestor
from cookiematch.dmp.traits.writes import TraitStore
from cookiematch.errors import StorageError
from cookiematch.storage import Durability, Store, connect_store


def load_partner(config_file: Path, partner_id: str) -> tuple[Config, DmpConfig, DmpPartnerConfig]:
    """The configuration, its ``[dmp]`` table and the partner, which must be there."""
    config, dmp_config = load_dmp(config_file)
    for partner in dmp_config.partners:
        if partner.id == partner_id:
            return config, dmp_config, partner
    raise click.ClickException(f"{config_file}: no partner {partner_id!r} in [[dmp.partners]]")


@contextlib.asynccontextmanager
async def open_ingestor(config: Config, dmp_config: DmpConfig) -> AsyncIterator[Ingestor]:
    """An Ingestor over the configured store (ASYNC writes, flushed when the block ends)."""
    store: Store = await connect_store(config.store.url, durability=Durability.ASYNC)
    try:
        traits = TraitStore(store, dmp_config.trait_catalog(), clock=time.time)
        if dmp_config.segments:  # incremental segment membership, as the server does
            segments = build_segment_service(
                dmp_config.segments,
                store,
                max_events_per_name=dmp_config.ingest.max_events_per_name,
            )
            traits.on_profile_changed.append(segments.profiles_changed)
        yield build_ingestor(
            store, traits, pending_ttl=dmp_config.ingest.pending_ttl_days * 86400.0
        )
    finally:
        await store.close()
    if store.lost:
        raise StorageError(
            f"{store.lost:,} queued writes were not stored (see the log above); "
            "ingesting again is idempotent"
        )
