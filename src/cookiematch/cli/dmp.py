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
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import click

from cookiematch.cli.common import config_option, run
from cookiematch.cli.dmp_ingestor import load_partner, open_ingest_core, open_ingestor
from cookiematch.dmp.ingest import IngestReport, bulk_gc
from cookiematch.dmp.ingest.pipeline import BATCH_RECORDS
from cookiematch.dmp.ingest.readers import Batch, Format, expand, read_batches
from cookiematch.dmp.ingest.rejects import Reject, RejectsWriter
from cookiematch.dmp.pull import Cursors, PullSource, pull
from cookiematch.roots.dmp import dmp_table
from cookiematch.web.outbound import PartnerTransport


@click.group()
def dmp() -> None:
    """DMP partner data: ingest files, pull from partner endpoints."""


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
    help="Without a DuckDB analytics engine: records parsed, looked up and written at a time.",
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
    """Ingest partner records from DATA files or directories (JSON Lines, CSV, TSV, gzip).

    With the analytics engine on DuckDB ([dmp.analytics], the default) the files are
    ingested into its profiles in SQL; else record by record, a batch at a time."""
    config, _ = load_partner(config_file, partner_id)
    try:
        files = expand(data, fmt)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    size = sum(path.stat().st_size for path in files)
    sink = rejects if rejects is not None else sys.stderr
    started = time.perf_counter()
    analytics = dmp_table(config).analytics
    with click.progressbar(length=size, label="ingesting", file=sys.stderr) as bar:

        async def in_sql() -> IngestReport:
            writer = RejectsWriter(sink)
            async with open_ingest_core(config) as core:
                assert core.analytics is not None
                found = await core.analytics.ingest(
                    partner_id, files, core.ingestor.pending, fmt=fmt, progress=bar.update,
                    memory_limit_mb=analytics.memory_limit_mb,
                )  # fmt: skip
                found.count(core.funnel, partner_id)
            for refusal in found.rejects:
                writer.write(refusal)
            writer.flush()
            return found

        async def per_record() -> IngestReport:
            writer = RejectsWriter(sink)

            def batches() -> Iterator[Batch]:
                for path in files:
                    yield from read_batches(path, fmt, batch_size, bar.update)

            async with open_ingestor(config) as ingestor:
                with bulk_gc():
                    report = await ingestor.ingest(partner_id, batches(), on_reject=writer.write)
            writer.flush()
            return report

        report = run(in_sql if analytics.engine == "duckdb" else per_record)
    click.echo(_summary(report, time.perf_counter() - started))


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
    config, partner = load_partner(config_file, partner_id)
    if partner.pull_url is None:
        raise click.ClickException(f"partner {partner_id!r} has no pull_url")
    token = partner.pull_token.reveal() if partner.pull_token is not None else None
    source = PullSource(partner.id, partner.pull_url, token, partner.pull_page_size)

    async def work() -> None:
        writer, on_reject = _rejects_sink(rejects)
        async with (
            open_ingest_core(config) as core,
            PartnerTransport() as transport,
        ):
            ingestor = core.ingestor
            cursors = Cursors(ingestor.store)
            while True:
                started = time.perf_counter()
                done = await pull(
                    source, ingestor, cursors, transport, max_pages=max_pages, on_reject=on_reject
                )
                writer.flush()
                assert done.ingest is not None
                seconds = time.perf_counter() - started
                click.echo(f"{done.pages} pages; {_summary(done.ingest, seconds)}")
                if every is None:
                    return
                if core.funnel_log is not None:  # each run's counts, in the DMP's funnel
                    await core.funnel_log.flush()
                await asyncio.sleep(every * 60)

    run(work)
