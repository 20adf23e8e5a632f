"""``cookiematch subject show|erase``: what a role stores about one browser or user, as JSON
(GDPR art. 15), and its erasure (art. 17), the same as the admin API's
``/admin/v1/subjects/{subject}``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import click
import msgspec

from cookiematch.cli.common import config_option, load, run
from cookiematch.privacy.subjects import SubjectData
from cookiematch.roots.subjects import SUBJECT_DATA, subject_data
from cookiematch.storage import connect_store

role_option = click.option(
    "--role", type=click.Choice(sorted(SUBJECT_DATA)), required=True, help="Whose data."
)


@click.group()
def subject() -> None:
    """Access and erasure of what a role stores about one browser or user."""


def _with_subject_data(
    config_file: Path, role: str, work: Callable[[SubjectData], Awaitable[msgspec.Struct]]
) -> None:
    config = load(config_file)

    async def main() -> msgspec.Struct:
        store = await connect_store(config.store.url, durability=config.store.durability)
        try:
            return await work(subject_data(role, config, store))
        finally:
            await store.close()

    report = run(main)
    click.echo(msgspec.json.format(msgspec.json.encode(report), indent=2).decode())


@subject.command("show")
@config_option
@role_option
@click.argument("subject_id")
def show(config_file: Path, role: str, subject_id: str) -> None:
    """Print everything ROLE stores about SUBJECT_ID, with how long each record is kept."""
    _with_subject_data(config_file, role, lambda data: data.access(subject_id))


@subject.command("erase")
@config_option
@role_option
@click.argument("subject_id")
def erase(config_file: Path, role: str, subject_id: str) -> None:
    """Erase everything ROLE stores about SUBJECT_ID; print what was removed."""
    _with_subject_data(config_file, role, lambda data: data.erase(subject_id))
