"""``cookiematch store copy SRC_URL DST_URL`` and ``cookiematch store stats URL``."""

from __future__ import annotations

import itertools

import click

from cookiematch.cli.common import run
from cookiematch.storage import connect_store
from cookiematch.storage.transfer import copy_store, count_keys


@click.group()
def store() -> None:
    """Inspect stores and move data between them (any two store URLs)."""


@store.command()
@click.argument("src_url")
@click.argument("dst_url")
@click.option("--prefix", default="", help="Copy only keys starting with this.")
@click.option("--batch", type=click.IntRange(10, 100_000), default=1000, show_default=True)
def copy(src_url: str, dst_url: str, prefix: str, batch: int) -> None:
    """Copy plain keys (with their remaining TTL) and field maps from SRC_URL to DST_URL.

    Existing keys in the destination are overwritten; nothing is deleted there.
    """

    async def work() -> None:
        src = await connect_store(src_url)
        try:
            dst = await connect_store(dst_url)
            try:
                # the total is unknown without a second full scan: an open-ended bar counting keys
                unknown_length = itertools.count()
                with click.progressbar(unknown_length, label="copying", show_pos=True) as bar:
                    done = await copy_store(
                        src, dst, prefix=prefix, batch=batch, progress=bar.update
                    )
            finally:
                await dst.close()
        finally:
            await src.close()
        click.echo(f"copied {done.values} keys, {done.maps} field maps ({done.fields} fields)")

    run(work)


@store.command()
@click.argument("url")
@click.option("--prefix", default="", help="Count only keys starting with this.")
def stats(url: str, prefix: str) -> None:
    """Key counts by prefix (up to the first ':') and facts about the backend."""

    async def work() -> None:
        opened = await connect_store(url)
        try:
            info = await opened.info()
            counts = await count_keys(opened, prefix=prefix)
        finally:
            await opened.close()
        for name, value in info.items():
            click.echo(f"{name:<32} {value}")
        click.echo(f"\n{'prefix':<20} {'keys':>12} {'field maps':>12} {'fields':>14}")
        for group in sorted(set(counts.values) | set(counts.maps)):
            click.echo(
                f"{group:<20} {counts.values[group]:>12,} {counts.maps[group]:>12,}"
                f" {counts.fields[group]:>14,}"
            )
        total = sum(counts.values.values()), sum(counts.maps.values())
        fields = sum(counts.fields.values())
        click.echo(f"{'total':<20} {total[0]:>12,} {total[1]:>12,} {fields:>14,}")

    run(work)
