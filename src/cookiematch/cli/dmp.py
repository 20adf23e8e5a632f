"""``cookiematch dmp``: partner data in (``ingest``, ``pull``).

Other DMP commands register on the same group from their own module::

    from cookiematch.cli.dmp import dmp

    @dmp.command("export")
    def export(...): ...

The CLI writes with ``Durability.ASYNC`` and flushes when it closes the store, before printing
the counts: the files (or the partner's endpoint) are the source of truth and ingesting again
is idempotent, so a crash mid-run is repaired by running it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO

import click
import httpx

from cookiematch.cli.common import config_option, load_dmp, run
from cookiematch.config import Config
from cookiematch.config.dmp import DmpConfig, DmpPartnerConfig
from cookiematch.config.dmp_segments import build_segment_service
from cookiematch.dmp.ingest import Ingestor, IngestReport, build_ingestor, bulk_gc
from cookiematch.dmp.ingest.pipeline import BATCH_RECORDS
from cookiematch.dmp.ingest.readers import Batch, Format, expand, read_batches
from cookiematch.dmp.ingest.rejects import Reject, RejectsWriter
from cookiematch.dmp.pull import Cursors, PullSource, pull
from cookiematch.dmp.traits import TraitStore
from cookiematch.storage import Durability, Store, connect_store


@click.group()
def dmp() -> None:
    """DMP partner data: ingest files, pull from partner endpoints."""


def _load(config_file: Path, partner_id: str) -> tuple[Config, DmpConfig, DmpPartnerConfig]:
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
                dmp_config.destinations,
                store,
                match_ttl_days=dmp_config.match_ttl_days,
            )
            traits.on_profile_changed.append(segments.profiles_changed)
        yield build_ingestor(
            store, traits, pending_ttl=dmp_config.ingest.pending_ttl_days * 86400.0
        )
    finally:
        await store.close()


def _rejects_sink(stream: IO[str] | None) -> tuple[RejectsWriter, Callable[[Reject], None]]:
    writer = RejectsWriter(stream if stream is not None else sys.stderr)
    return writer, writer.write


def _summary(report: IngestReport, seconds: float) -> str:
    rate = report.records / seconds if seconds > 0 else 0.0
    return (
        f"{report.records:,} records in {seconds:.1f} s ({rate:,.0f}/s): "
        f"{report.accepted:,} accepted ({report.profiles:,} profile writes), "
        f"{report.pending:,} pending (not synced yet), {report.rejected:,} rejected; "
        f"{report.expired_events:,} events already expired, "
        f"{report.resolved:,} pending records resolved"
    )


@dmp.command()
@config_option
@click.option("--partner", "partner_id", required=True, help="Whose IDs the records carry.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "tsv"]),
    default=None,
    help="Default: from each file's name (.jsonl/.ndjson/.json, .csv, .tsv; .gz allowed).",
)
@click.option(
    "--rejects",
    type=click.File("w"),
    default=None,
    help="Write refused records here as JSON Lines (default: stderr).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1_000_000),
    default=BATCH_RECORDS,
    show_default=True,
    help="Records per batch (about one store transaction each; memory grows with it).",
)
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def ingest(
    config_file: Path,
    partner_id: str,
    fmt: Format | None,
    rejects: IO[str] | None,
    batch_size: int,
    data: tuple[Path, ...],
) -> None:
    """Ingest partner records from DATA files or directories (JSON Lines, CSV, TSV, gzip)."""
    config, dmp_config, _ = _load(config_file, partner_id)

    async def work() -> tuple[IngestReport, float]:
        files = expand(data, fmt)
        writer, on_reject = _rejects_sink(rejects)
        total = sum(path.stat().st_size for path in files)
        started = time.perf_counter()
        async with open_ingestor(config, dmp_config) as ingestor:
            with click.progressbar(length=total, label="ingesting", file=sys.stderr) as bar:

                def batches() -> Iterator[Batch]:
                    for path in files:
                        yield from read_batches(path, fmt, batch_size, bar.update)

                with bulk_gc():
                    report = await ingestor.ingest(partner_id, batches(), on_reject=on_reject)
        writer.flush()
        return report, time.perf_counter() - started

    report, seconds = run(work)
    click.echo(_summary(report, seconds))


@dmp.command("pull")
@config_option
@click.argument("partner_id", metavar="PARTNER")
@click.option(
    "--every",
    type=click.IntRange(1, 7 * 24 * 60),
    default=None,
    help="Pull again every this many minutes, forever (default: once, e.g. from cron).",
)
@click.option("--max-pages", type=click.IntRange(1), default=None, help="Stop a run after this.")
@click.option("--rejects", type=click.File("w"), default=None, help="Default: stderr.")
def pull_command(
    config_file: Path,
    partner_id: str,
    every: int | None,
    max_pages: int | None,
    rejects: IO[str] | None,
) -> None:
    """Pull PARTNER's records from its `pull_url`, page by page, from the stored cursor."""
    config, dmp_config, partner = _load(config_file, partner_id)
    if partner.pull_url is None:
        raise click.ClickException(f"partner {partner_id!r} has no pull_url")
    token = partner.pull_token.reveal() if partner.pull_token is not None else None
    source = PullSource(partner.id, partner.pull_url, token, partner.pull_page_size)

    async def work() -> None:
        writer, on_reject = _rejects_sink(rejects)
        async with (
            open_ingestor(config, dmp_config) as ingestor,
            httpx.AsyncClient(timeout=30.0) as client,
        ):
            cursors = Cursors(ingestor.store)
            while True:
                started = time.perf_counter()
                done = await pull(
                    source, ingestor, cursors, client, max_pages=max_pages, on_reject=on_reject
                )
                writer.flush()
                assert done.ingest is not None
                seconds = time.perf_counter() - started
                click.echo(f"{done.pages} pages; {_summary(done.ingest, seconds)}")
                if every is None:
                    return
                await asyncio.sleep(every * 60)

    run(work)
