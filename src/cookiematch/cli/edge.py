"""``cookiematch edge render``: nginx + Lua in front of the exchange (docs/edge.md)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cookiematch.cli.common import config_option, load
from cookiematch.edge.render import render as render_edge
from cookiematch.errors import CookiematchError


@click.group()
def edge() -> None:
    """The edge: nginx answering the pure cookie match in front of `cookiematch serve`."""


@edge.command()
@config_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write nginx.conf, the Lua module and the key file into.",
)
@click.option("--listen", default="0.0.0.0:8080", show_default=True,
              help="nginx's listen address (host:port).")  # fmt: skip
@click.option("--workers", default="auto", show_default=True, help="nginx worker processes.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM certificate: TLS ends at the edge (with --tls-key).")  # fmt: skip
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM private key of --tls-cert.")  # fmt: skip
@click.option("--user", default=None,
              help="The account nginx's workers run as (nginx's user directive); the snapshot"
                   " edge.keys is given to it.")  # fmt: skip
def render(
    config_file: Path,
    out: Path,
    listen: str,
    workers: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    user: str | None,
) -> None:
    """Write nginx.conf, cookiematch_edge.lua and edge.keys (0600) into OUT."""
    config = load(config_file)
    try:
        rendered = render_edge(
            config,
            out,
            listen=listen,
            workers=workers,
            tls_cert=tls_cert,
            tls_key=tls_key,
            user=user,
        )
    except CookiematchError as exc:
        raise click.ClickException(str(exc)) from exc
    exchange = config.exchange
    if exchange is not None and not exchange.trusted_proxies:
        click.echo(
            "warning: [exchange] trusted_proxies is empty: the server will not read the"
            " edge's X-Forwarded-Proto (list the edge's address there)",
            err=True,
        )
    if user is None and os.geteuid() == 0:
        click.echo(
            "warning: no --user: nginx's workers run as its default user, which cannot re-read"
            " edge.keys (0600) when the server rewrites it",
            err=True,
        )
    click.echo(f"wrote {rendered.conf} and {rendered.keys}")
    click.echo(f"answered at the edge: {', '.join(rendered.answered) or '(no buyer)'}")
    for nid, why in sorted(rendered.left.items()):
        click.echo(f"left to the server: {nid}: {why}")
    out = rendered.conf.parent
    click.echo(f"run: nginx -p {out} -c {rendered.conf} -e {out}/logs/error.log")
