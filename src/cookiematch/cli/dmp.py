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
from cookiematch.cli.dmp_workers import (
    MAX_AUTO_WORKERS,
    MAX_WORKERS,
    PARALLEL_FROM_BYTES,
    READ_LINES,
    auto_workers,
    ingest_in_workers,
)
from cookiematch.dmp.ingest import IngestReport, bulk_gc
from cookiematch.dmp.ingest.pipeline import BATCH_RECORDS, HOLD_PROFILES
from cookiematch.dmp.ingest.readers import Batch, Format, expand, read_batches
from cookiematch.dmp.ingest.rejects import Reject, RejectsWriter
from cookiematch.dmp.pull import Cursors, PullSource, pull
from cookiematch.errors import CookiematchError
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
    help="Records parsed and looked up at a time (memory grows with it).",
)
@click.option(
    "--hold-profiles",
    type=click.IntRange(1, 100_000_000),
    default=HOLD_PROFILES,
    show_default=True,
    help="Profiles held merged in memory, per process (~1 KB each); beyond that they go to "
    "sorted runs under TMPDIR, merged at the end (slower than memory). Each profile is "
    "written once either way.",
)
@click.option(
    "--workers",
    type=click.IntRange(0, MAX_WORKERS),
    default=0,
    help="Processes ingesting at once (records dealt out by partner uid). "
    f"Default 0: two per CPU (up to {MAX_AUTO_WORKERS}) for data of "
    f"{PARALLEL_FROM_BYTES // 2**20} MiB or more, else 1.",
)
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def ingest(
    config_file: Path,
    partner_id: str,
    fmt: Format | None,
    rejects: IO[str] | None,
    batch_size: int,
    hold_profiles: int,
    workers: int,
    data: tuple[Path, ...],
) -> None:
    """Ingest partner records from DATA files or directories (JSON Lines, CSV, TSV, gzip).

    With the analytics engine on DuckDB (``[dmp.analytics]``, the default) the files are
    ingested into its profiles in SQL, in this process (``--batch-size``, ``--hold-profiles``
    and ``--workers`` are the per-record path's)."""
    config, _ = load_partner(config_file, partner_id)
    try:
        files = expand(data, fmt)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    size = sum(path.stat().st_size for path in files)
    count = workers or auto_workers(size)
    sink = rejects if rejects is not None else sys.stderr
    started = time.perf_counter()
    analytics = dmp_table(config).analytics
    if analytics.engine == "duckdb":
        with click.progressbar(length=size, label="ingesting", file=sys.stderr) as bar:

            async def in_sql() -> IngestReport:
                writer = RejectsWriter(sink)
                async with open_ingest_core(config) as core:
                    assert core.analytics is not None
                    found = await core.analytics.ingest(
                        partner_id, files, core.ingestor.pending, fmt=fmt,
                        progress=bar.update, memory_limit_mb=analytics.memory_limit_mb,
                    )  # fmt: skip
                    found.count(core.funnel, partner_id)
                for refusal in found.rejects:
                    writer.write(refusal)
                writer.flush()
                return found

            report = run(in_sql)
        click.echo(_summary(report, time.perf_counter() - started))
        return
    with click.progressbar(length=size, label="ingesting", file=sys.stderr) as bar:

        def batches(lines: int) -> Iterator[Batch]:
            for path in files:
                yield from read_batches(path, fmt, lines, bar.update)

        if count == 1:

            async def work() -> IngestReport:
                writer = RejectsWriter(sink)
                async with open_ingestor(config) as ingestor:
                    with bulk_gc():
                        report = await ingestor.ingest(
                            partner_id,
                            batches(batch_size),
                            on_reject=writer.write,
                            hold_profiles=hold_profiles,
                        )
                writer.flush()
                return report

            report = run(work)
        else:
            try:
                report = ingest_in_workers(
                    config_file,
                    partner_id,
                    batches(READ_LINES),
                    workers=count,
                    batch_size=batch_size,
                    hold_profiles=hold_profiles,
                    rejects=sink,
                )
            except CookiematchError as exc:
                raise click.ClickException(str(exc)) from exc
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
