"""The ``cookiematch`` command: ``serve``, ``demo``, ``check-config``, ``keygen``,
``credential``; ``store``, ``subject``, ``dmp`` and ``edge`` are groups of their own modules."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import get_args

import click
import msgspec

from cookiematch.cli.common import config_option, load, run
from cookiematch.cli.conform import conform
from cookiematch.cli.dmp import dmp
from cookiematch.cli.dmp_segments import register as register_dmp_segments
from cookiematch.cli.edge import edge
from cookiematch.cli.store import store
from cookiematch.cli.subject import subject
from cookiematch.config import Config
from cookiematch.errors import CookiematchError
from cookiematch.exchange.credentials import new_credential
from cookiematch.exchange.model import Credential, CredentialScope
from cookiematch.logs import FORMAT_ENV, FORMATS, LEVEL_ENV, LEVELS, configure
from cookiematch.roots import ROLE_FACTORIES
from cookiematch.storage import connect_store
from cookiematch.web.connections import IDLE_TIMEOUT_MS, MAX_CONNECTIONS
from cookiematch.web.drain import DRAIN_LONGEST_SECONDS


@click.group()
@click.version_option(package_name="cookiematch")
@click.option(
    "--log-level",
    type=click.Choice(LEVELS),
    default="info",
    show_default=True,
    envvar=LEVEL_ENV,
    help="The least severe records logged (every process started by the command too).",
)
@click.option(
    "--log-format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    envvar=FORMAT_ENV,
    help="One line per record: text, or a JSON object.",
)
def main(log_level: str, log_format: str) -> None:
    """Cookie matching and ID sync: exchange, buyer and DMP roles."""
    configure(log_level, log_format)


@main.command()
@config_option
@click.option(
    "--role",
    type=click.Choice(sorted(ROLE_FACTORIES)),
    default=None,
    help="Serve only this role (default: every role the file enables).",
)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--interface", type=click.Choice(["rsgi", "asgi"]), default="rsgi", show_default=True)
@click.option("--access-log", is_flag=True, help="Log every request (granian's access log).")
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0.001, 60),
    default=IDLE_TIMEOUT_MS / 1000,
    show_default=True,
    help="Seconds a connection may wait for a request head (new, idle or half sent).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=MAX_CONNECTIONS,
    show_default=True,
    help="Open connections per worker (lowered to what the open-files limit allows).",
)
@click.option(
    "--drain-seconds",
    type=click.FloatRange(0, 25),
    default=DRAIN_LONGEST_SECONDS,
    show_default=True,
    help="Longest drain on SIGTERM (answers close their connections, /readyz says 503).",
)
def serve(
    config_file: Path,
    role: str | None,
    workers: int,
    interface: str,
    access_log: bool,
    idle_timeout: float,
    max_connections: int,
    drain_seconds: float,
) -> None:
    """Serve the roles the configuration enables, each on its own `listen` address."""
    from cookiematch.web.server import serve as run_server

    config = load(config_file)
    roles = [role] if role else sorted(r for r in config.roles if r in ROLE_FACTORIES)
    if not roles:
        raise click.ClickException(f"{config_file}: no role to serve (add an [exchange] table)")
    if len(roles) > 1:
        options = ["--workers", str(workers), "--interface", interface]
        options += ["--idle-timeout", str(idle_timeout), "--max-connections"]
        options += [str(max_connections), "--drain-seconds", str(drain_seconds)]
        _serve_each(config_file, roles, [*options, *(["--access-log"] if access_log else [])])
        return
    listen = _listen(config, roles[0])
    try:
        run_server(
            ROLE_FACTORIES[roles[0]],
            listen[0],
            listen[1],
            interface="asgi" if interface == "asgi" else "rsgi",
            workers=workers,
            config=config_file,
            log_access=access_log,
            idle_timeout_ms=round(idle_timeout * 1000),
            max_connections=max_connections,
            drain_seconds=drain_seconds,
        )
    except CookiematchError as exc:
        raise click.ClickException(f"[{roles[0]}]: {exc}") from exc


def _listen(config: Config, role: str) -> tuple[str, int]:
    table = getattr(config, role)
    return table.listen.host, table.listen.port


def _serve_each(config_file: Path, roles: list[str], options: list[str]) -> None:
    """One server process per role (each given ``options``); stops them all when any stops
    or on SIGTERM/SIGINT."""
    command = [sys.executable, "-m", "cookiematch", "serve", "--config", str(config_file)]
    children = [subprocess.Popen([*command, "--role", role, *options]) for role in roles]

    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        os.wait()
    finally:
        stop()
        for child in children:
            child.wait()


@main.command("check-config")
@config_option
@click.option("--connect", is_flag=True, help="Also open the store and check that it answers.")
def check_config(config_file: Path, connect: bool) -> None:
    """Run every check `serve` runs before it binds a port; print the roles it would serve.

    The file is read and validated, and each role's server is built once as every worker
    builds it (keys, templates, the privacy policy); with --connect the store is opened and
    pinged too. "ok" means `serve` starts with this file.
    """
    from cookiematch.web.server import check_app

    config = load(config_file)
    roles = sorted(role for role in config.roles if role in ROLE_FACTORIES)
    for role in roles:
        try:
            check_app(ROLE_FACTORIES[role], config_file)
        except (CookiematchError, ValueError) as exc:
            raise click.ClickException(f"{config_file}: [{role}]: {exc}") from exc
    if connect:
        run(lambda: _ping(config))
    click.echo(f"{config_file}: ok; roles: {', '.join(roles) or 'none'}")


async def _ping(config: Config) -> None:
    store = await connect_store(config.store.url, durability=config.store.durability)
    try:
        await store.ping()
    finally:
        await store.close()


@main.command()
def keygen() -> None:
    """Print a new user-ID encryption secret (base64 of 32 random bytes)."""
    click.echo(base64.b64encode(os.urandom(32)).decode())


@main.command()
@click.option("--nid", required=True, help="The buyer the credential acts for.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(get_args(CredentialScope)),
    default=("user_lists",),
    show_default=True,
    help="What it may do (repeat for several).",
)
def credential(nid: str, scopes: tuple[CredentialScope, ...]) -> None:
    """Print a new buyer API credential: its token (for the buyer, shown only here) and the
    [[exchange.credentials]] entry that recognises it by its SHA-256."""
    token, made = new_credential(nid, tuple(dict.fromkeys(scopes)))
    try:
        msgspec.convert(msgspec.to_builtins(made), Credential)
    except msgspec.ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint="--nid") from None
    click.echo(f"# token (give it to the buyer; it is not stored anywhere): {token}")
    click.echo("[[exchange.credentials]]")
    click.echo(f'nid = "{made.nid}"')
    click.echo(f'token_sha256 = "{made.token_sha256}"')
    click.echo("scopes = [" + ", ".join(f'"{s}"' for s in made.scopes) + "]")


@main.command()
@click.option("--serve", is_flag=True, help="Keep every role up and print the URLs to open.")
def demo(serve: bool) -> None:
    """Run the whole story locally on the embedded store and print every hop."""
    from cookiematch.demo.story import run_demo

    raise SystemExit(run_demo(serve=serve))


main.add_command(store)
main.add_command(subject)
main.add_command(dmp)
main.add_command(conform)
main.add_command(edge)
register_dmp_segments(dmp)  # export, segments recompute|sizes, overlap
