"""One DMP partner, segment or destination from an admin API body, validated exactly as the
configuration file's entry is: the same Struct (``config/dmp.py``, ``config/dmp_segments.py``),
then the whole ``[dmp]`` table's ``problems()`` with the entry in it, so templates are
compiled and test-rendered and references checked as at load.

Errors are ``ValidationFailed`` (422, as in the exchange's admin API) naming the entry's own
keys (``sync_url``), or, for a problem the change causes elsewhere (a client naming a deleted
partner), the table's key (``clients[0].partners[1]``). A secret sent back as ``MASK``
keeps the one stored.
"""

from __future__ import annotations

import posixpath
from pathlib import PurePosixPath
from typing import Any, Literal

import msgspec

from cookiematch.config.convert import convert_collecting
from cookiematch.config.dmp import DmpConfig, DmpPartnerConfig
from cookiematch.config.dmp_segments import DmpDestinationConfig, DmpSegmentConfig
from cookiematch.config.entries import with_identity
from cookiematch.config.values import Problems
from cookiematch.errors import Conflict, ValidationFailed
from cookiematch.secret import MASK, Secret

__all__ = [
    "ENTRY_TYPES",
    "Entry",
    "Kind",
    "entries_of",
    "parse_entry",
    "with_entry",
    "without_entry",
]

Kind = Literal["partners", "segments", "destinations"]
Entry = DmpPartnerConfig | DmpSegmentConfig | DmpDestinationConfig
ENTRY_TYPES: dict[Kind, type[Entry]] = {
    "partners": DmpPartnerConfig,
    "segments": DmpSegmentConfig,
    "destinations": DmpDestinationConfig,
}


def entries_of(dmp: DmpConfig, kind: Kind) -> tuple[Entry, ...]:
    found: tuple[Entry, ...] = getattr(dmp, kind)
    return found


def with_entry(dmp: DmpConfig, kind: Kind, ident: str, entry: Entry | None) -> DmpConfig:
    """``dmp`` with the ``kind`` entry ``ident`` replaced in place, appended, or (``None``)
    removed."""
    kept: list[Entry] = []
    placed = False
    for current in entries_of(dmp, kind):
        if current.id != ident:
            kept.append(current)
        elif entry is not None:
            kept.append(entry)
            placed = True
    if entry is not None and not placed:
        kept.append(entry)
    return msgspec.structs.replace(dmp, **{kind: tuple(kept)})


def parse_entry(dmp: DmpConfig, kind: Kind, ident: str, data: object) -> tuple[Entry, DmpConfig]:
    """The entry ``ident`` of ``kind`` from a PUT body, and ``dmp`` with it;
    ``ValidationFailed`` naming every bad key."""
    current = next((e for e in entries_of(dmp, kind) if e.id == ident), None)
    fields, errors = with_identity(data, "id", ident)
    errors += _keep_secrets(fields, current)
    entry, more = convert_collecting(fields, ENTRY_TYPES[kind])
    errors += more
    if isinstance(entry, DmpDestinationConfig) and entry.kind == "file":
        errors += _file_path_errors(dmp.export_directory, entry.path)
    if entry is None or errors:
        raise ValidationFailed(f"invalid {kind[:-1]} {ident!r}", errors=errors)
    candidate = with_entry(dmp, kind, ident, entry)
    index = next(i for i, e in enumerate(entries_of(candidate, kind)) if e.id == ident)
    problems = _errors(candidate.problems(), f"{kind}[{index}].")
    if problems:
        raise ValidationFailed(f"invalid {kind[:-1]} {ident!r}", errors=problems)
    return entry, candidate


def without_entry(dmp: DmpConfig, kind: Kind, ident: str) -> DmpConfig:
    """``dmp`` without the entry; ``Conflict`` if others still name it."""
    candidate = with_entry(dmp, kind, ident, None)
    problems = _errors(candidate.problems(), "")
    if problems:
        raise Conflict(f"{kind[:-1]} {ident!r} is still named elsewhere", errors=problems)
    return candidate


def _file_path_errors(directory: str | None, path: str | None) -> list[dict[str, str]]:
    """A ``file`` destination from the admin API writes only inside ``[dmp]
    export_directory``: an admin token must not be a way to write anywhere the server can."""
    if path is None:
        return []  # "required for kind 'file'" comes from the table's checks
    if directory is None:
        message = "a file destination is set through the API only with [dmp] export_directory"
        return [{"field": "path", "message": message}]
    root = PurePosixPath(posixpath.normpath(directory))
    given = PurePosixPath(path)
    inside = posixpath.normpath(path) == path and ".." not in given.parts
    if not (given.is_absolute() and inside and given.is_relative_to(root) and given != root):
        message = f"must be an absolute path inside export_directory {str(root)!r}, without .."
        return [{"field": "path", "message": message}]
    return []


def _keep_secrets(fields: dict[str, Any], current: Entry | None) -> list[dict[str, str]]:
    """Replace each ``MASK`` by the secret stored at that key (an answer sent back as it is)."""
    errors = []
    for key, value in list(fields.items()):
        if value != MASK:
            continue
        kept = getattr(current, key, None)
        if isinstance(kept, Secret):
            fields[key] = kept.reveal()
        else:
            errors.append({"field": key, "message": "no stored secret to keep"})
    return errors


def _errors(problems: Problems, own: str) -> list[dict[str, str]]:
    """Problems as API errors, the entry's own keys (under ``own``) without that prefix."""
    return [
        {"field": key[len(own) :] if own and key.startswith(own) else key, "message": message}
        for key, message in problems
    ]
