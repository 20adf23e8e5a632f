"""``cookiematch dmp`` commands for segments: ``export``, ``segments recompute``,
``segments sizes``, ``overlap``, ``migrate-to-engine``. ``register(group)`` adds them to the
``dmp`` group."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import click
import msgspec

from cookiematch.cli.common import config_option, load_dmp, run
from cookiematch.dmp.exports import Mode
from cookiematch.dmp.overlap import STD_DEVS, Audiences, PairOverlap
from cookiematch.dmp.retired import drop_member_index
from cookiematch.dmp.segment_exports import SegmentExports
from cookiematch.dmp.segments.service import SegmentService
from cookiematch.dmp.segments.updater import RecomputeReport
from cookiematch.roots.dmp import open_core
from cookiematch.web.outbound import PartnerTransport


@asynccontextmanager
async def open_segments(config_file: Path) -> AsyncIterator[SegmentService]:
    """The DMP core's segments (``roots/dmp.py``) over the configured store."""
    config, _ = load_dmp(config_file)
    async with open_core(config) as core:
        yield core.segments


@asynccontextmanager
async def open_exports(config_file: Path) -> AsyncIterator[SegmentExports]:
    """The DMP core's segment exports (``roots/dmp.py``) over the configured store."""
    config, _ = load_dmp(config_file)
    async with open_core(config) as core:
        yield core.exports


@click.command("export")
@config_option
@click.option("--segment", "segment_id", required=True, help="The segment id.")
@click.option("--destination", "destination_id", required=True, help="The destination id.")
@click.option("--full", is_flag=True, help="Send every member again (default: the changes).")
@click.option("--json", "as_json", is_flag=True, help="Print the delivery report as JSON.")
def export(
    config_file: Path, segment_id: str, destination_id: str, full: bool, as_json: bool
) -> None:
    """Send a segment to a destination, translated to the destination partner's IDs."""

    async def work() -> object:
        async with PartnerTransport() as transport, open_exports(config_file) as exports:
            mode = Mode.FULL if full else Mode.INCREMENTAL
            return await exports.export(segment_id, destination_id, transport, mode)

    report = run(work)
    if as_json:
        click.echo(msgspec.json.encode(report).decode())
    else:
        data = msgspec.to_builtins(report)
        for key in ("segment", "destination", "mode", "members", "sent", "added", "removed",
                    "accepted", "rejected", "failed", "unmatched", "no_consent", "unchanged",
                    "batches", "retries", "seconds"):  # fmt: skip
            click.echo(f"{key:<12} {data[key]}")
        for error in data["errors"][:10]:
            click.echo(f"error        {error}", err=True)
    if getattr(report, "failed", 0):
        sys.exit(1)


class _Progress:
    """Prints the number of profiles scanned every ``every`` profiles (to stderr)."""

    def __init__(self, every: int = 100_000) -> None:
        self.done = 0
        self.every = every

    def __call__(self, count: int) -> None:
        before, self.done = self.done, self.done + count
        if before // self.every != self.done // self.every:
            click.echo(f"  {self.done:,} profiles", err=True)


@click.group("segments")
def segments() -> None:
    """Segment memberships: full recompute and sizes."""


@segments.command("recompute")
@config_option
@click.option(
    "--no-sketches",
    is_flag=True,
    help="Skip the theta sketches of the audiences (per-profile recompute only).",
)
def recompute(config_file: Path, no_sketches: bool) -> None:
    """Evaluate every profile against every segment; write what changed (on the analytics
    engine, the profiles changed since its last run reloaded first)."""

    async def work() -> RecomputeReport:
        config, _ = load_dmp(config_file)
        async with open_core(config) as core:
            if core.analytics is not None:
                return await core.recompute()
            return await core.segments.recompute(sketches=not no_sketches, progress=_Progress())

    _print_recompute(run(work))


@click.command("migrate-to-engine")
@config_option
def migrate_to_engine(config_file: Path) -> None:
    """Load every profile of the key-value store into the analytics engine ([dmp.analytics]),
    replacing what it held; then recompute the segments on it and write what changed; then
    delete the member index an earlier version kept in the store (``dmp/retired.py``)."""

    async def work() -> tuple[int, RecomputeReport, int]:
        config, _ = load_dmp(config_file)
        async with open_core(config) as core:
            if core.analytics is None:
                raise click.UsageError('[dmp.analytics] engine is "off"')
            segments = list(core.segments.segments.values())
            loaded, report = await core.analytics.migrate(segments)
            return loaded, report, await drop_member_index(core.store)

    loaded, report, dropped = run(work)
    click.echo(f"{loaded} profiles loaded into the analytics engine")
    _print_recompute(report)
    if dropped:
        click.echo(f"{dropped} maps of the retired member index deleted")


def _print_recompute(report: RecomputeReport) -> None:
    data = msgspec.to_builtins(report)
    rate = data["profiles"] / data["seconds"] if data["seconds"] else 0.0
    click.echo(
        f"{data['profiles']} profiles in {data['seconds']:.1f} s ({rate:,.0f}/s); "
        f"joined {data['joined']}, left {data['left']}"
    )
    for segment, size in sorted(data["sizes"].items()):
        click.echo(f"  {segment:<32} {size}")


@segments.command("sizes")
@config_option
def sizes(config_file: Path) -> None:
    """Members of each segment, as the last recompute counted them."""

    async def work() -> dict[str, int]:
        async with open_segments(config_file) as service:
            return await service.sizes()

    for segment, size in sorted(run(work).items()):
        click.echo(f"{segment:<32} {size}")


def _pair_line(pair: PairOverlap) -> str:
    both = pair.both
    bounds = "" if both.low == both.high else f" [{both.low:,.0f} - {both.high:,.0f}]"
    return (
        f"{pair.a:<24} {pair.b:<24} {pair.size_a.value:>10,.0f} {pair.size_b.value:>10,.0f} "
        f"{both.value:>10,.0f}{bounds}  jaccard {pair.jaccard:.3f}  affinity {pair.affinity:.2f}"
    )


@click.command("overlap")
@config_option
@click.option(
    "--audience",
    "names",
    multiple=True,
    required=True,
    help="segment:<id>, imp:<campaign>, click:<campaign> or conv:<campaign>; repeat. "
    "One audience: its affinity to every other.",
)
@click.option("--exact", is_flag=True, help="Scan every profile (default: stored sketches).")
def overlap(config_file: Path, names: tuple[str, ...], exact: bool) -> None:
    """Overlap and affinity between audiences."""

    async def work() -> tuple[Audiences, list[PairOverlap]]:
        async with open_segments(config_file) as service:
            return await service.overlap(list(names), exact=exact)

    audiences, pairs = run(work)
    bound = audiences.error_bound()
    population = audiences.population_size().value
    if bound is None:
        click.echo(f"exact, population {population:,.0f}")
    else:
        click.echo(
            f"theta sketches, population ~{population:,.0f}; each estimate within "
            f"±{bound:.1%} at {STD_DEVS} standard deviations (~95%); an overlap's error is "
            "relative to the union of its two audiences; bounds in brackets"
        )
    click.echo(f"{'a':<24} {'b':<24} {'|a|':>10} {'|b|':>10} {'overlap':>10}")
    for pair in pairs:
        click.echo(_pair_line(pair))


def register(group: click.Group) -> None:
    """Add ``export``, ``segments`` and ``overlap`` to the ``dmp`` group."""
    group.add_command(export)
    group.add_command(segments)
    group.add_command(overlap)
    group.add_command(migrate_to_engine)
